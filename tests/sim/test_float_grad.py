"""Optional gradients through the float executor (``grad=True``); the default stays ``torch.no_grad``."""

from __future__ import annotations

import numpy as np
import torch
from graph_builders import make_model
from onnx import helper

from espq.ir.onnx_io import graph_from_onnx
from espq.sim.float.executor import run_graph, run_segment

W = np.random.default_rng(0).normal(0, 0.5, (2, 3, 3, 3)).astype(np.float32)


def _graph():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "r"], ["y"], name="square"),
    ]
    return graph_from_onnx(make_model(nodes, [("x", [1, 3, 4, 4])], [("y", [1, 2, 4, 4])], {"w": W}))


def _reference_grad(x: np.ndarray) -> np.ndarray:
    xt = torch.tensor(x, requires_grad=True)
    r = torch.relu(torch.nn.functional.conv2d(xt, torch.tensor(W), padding=1))
    (r * r).sum().backward()
    return xt.grad.numpy()


def test_grad_flows_to_the_feeds_only_when_asked():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4)).astype(np.float32)
    graph = _graph()
    feed = torch.tensor(x, requires_grad=True)
    y = run_graph(graph, {"x": feed}, grad=True)["y"]
    y.sum().backward()
    np.testing.assert_allclose(feed.grad.numpy(), _reference_grad(x), rtol=1e-5, atol=1e-6)
    assert float(feed.grad.abs().sum()) > 1.0
    assert not run_graph(graph, {"x": torch.tensor(x, requires_grad=True)})["y"].requires_grad
    env = run_segment(graph, {"x": torch.tensor(x, requires_grad=True)}, 0, grad=True)
    assert env["y"].requires_grad
    assert not run_segment(graph, {"x": torch.tensor(x, requires_grad=True)}, 0)["y"].requires_grad
