"""A tiny int8-unfriendly model and data for AutoQuant tests."""

from __future__ import annotations

import numpy as np
import onnx
from graph_builders import make_model
from onnx import helper


def chain_model(seed: int = 0) -> onnx.ModelProto:
    """Three Conv+Relu layers with uneven channel ranges and a Gemm head (int16 layers help)."""
    rng = np.random.default_rng(seed)
    inits, nodes, src, cin = {}, [], "x", 3
    for i in range(3):
        w = rng.normal(0, 0.3, (8, cin, 3, 3)) * 10 ** rng.uniform(-1.5, 1.0, (8, 1, 1, 1))
        inits[f"w{i}"] = w.astype(np.float32)
        inits[f"b{i}"] = rng.normal(0, 0.1, 8).astype(np.float32)
        nodes.append(
            helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        src, cin = f"r{i}", 8
    nodes.append(helper.make_node("GlobalAveragePool", [src], ["g"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["g"], ["f"], name="flat"))
    inits["wf"] = rng.normal(0, 0.5, (8, 5)).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["f", "wf"], ["y"], name="head"))
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 5])], inits, name="chain")


def batches(n: int = 6, batch: int = 4, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, 3, 8, 8)).astype(np.float32) for _ in range(n)]
