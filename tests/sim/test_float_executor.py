"""run_graph / run_float behaviour: inputs, outputs, hooks, overrides, errors, batch > 1."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch
from test_float_helpers import assert_close, rand

from espq.errors import InputDataError, ShapeError, UnsupportedOpError
from espq.ir import Graph, Node, TensorInfo
from espq.sim.float import KERNELS, prepare_inputs, run_float, run_graph

F32 = np.dtype(np.float32)


def chain_graph() -> Graph:
    """x[1,4] -> Relu -> a ; a * w -> b ; b + x -> y."""
    nodes = [
        Node("relu", "Relu", ["x"], ["a"]),
        Node("mul", "Mul", ["a", "w"], ["b"]),
        Node("add", "Add", ["b", "x"], ["y"]),
    ]
    w = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    values = {n: TensorInfo(F32, (1, 4)) for n in ("x", "a", "b", "y")}
    return Graph(nodes, {"w": w}, values, ["x"], ["y"])


def ref_chain(x):
    return np.maximum(x, 0) * np.array([1, 2, 3, 4], np.float32) + x


def test_outputs_and_intermediates_batch3():
    g = chain_graph()
    x = rand(3, 4)
    res = run_float(g, x, outputs=["a", "y", "w", "x"])
    assert_close(res["y"], ref_chain(x))
    assert_close(res["a"], np.maximum(x, 0))
    np.testing.assert_array_equal(res["w"], g.initializers["w"])
    np.testing.assert_array_equal(res["x"], x)
    assert set(run_float(g, x)) == {"y"}


@pytest.mark.parametrize("form", ["array", "list", "dict", "torch", "float64"])
def test_input_forms(form):
    g = chain_graph()
    x = rand(2, 4)
    inputs = {
        "array": x,
        "list": [x],
        "dict": {"x": x},
        "torch": {"x": torch.from_numpy(x)},
        "float64": x.astype(np.float64),
    }[form]
    out = run_float(g, inputs)["y"]
    assert out.dtype == np.float32
    assert_close(out, ref_chain(x))


@pytest.mark.parametrize(
    "inputs,match",
    [
        ({"z": np.zeros((1, 4), np.float32)}, "unknown"),
        ([np.zeros((1, 4), np.float32)] * 2, "list of 2"),
        (np.zeros((1, 5), np.float32), r"expected shape \(1, 4\)"),
        (np.zeros((4,), np.float32), r"got \(4,\)"),
    ],
)
def test_input_validation(inputs, match):
    with pytest.raises(InputDataError, match=match):
        run_float(chain_graph(), inputs)


def test_prepare_inputs_casts_to_graph_dtype():
    feeds = prepare_inputs(chain_graph(), np.ones((2, 4), np.float64))
    assert feeds["x"].dtype == torch.float32 and feeds["x"].shape == (2, 4)


def test_hook_can_replace_outputs_and_sees_every_output():
    g = chain_graph()
    seen = []

    def hook(node, k, t):
        seen.append((node.name, k))
        return torch.zeros_like(t) if node.name == "relu" else t

    x = rand(2, 4)
    out = run_graph(g, {"x": torch.from_numpy(x)}, hook=hook)["y"]
    assert seen == [("relu", 0), ("mul", 0), ("add", 0)]
    assert_close(out.numpy(), x)  # relu output zeroed -> y = x


def test_kernel_override_for_one_run():
    g = chain_graph()
    x = rand(2, 4)
    override = {"Relu": lambda node, ins: [ins[0] * 0 + 1]}
    out = run_graph(g, {"x": torch.from_numpy(x)}, kernels=override)["y"]
    assert_close(out.numpy(), np.array([1, 2, 3, 4], np.float32) + x)
    assert KERNELS["Relu"] is not override["Relu"]
    assert_close(run_float(g, x)["y"], ref_chain(x))


def test_unknown_op_names_node_and_remedy():
    g = chain_graph()
    g.nodes[1].op_type = "FancyOp"
    with pytest.raises(
        UnsupportedOpError, match=r"'FancyOp' \(node 'mul'\) have no float kernel.*replace the op"
    ):
        run_float(g, rand(1, 4))


def test_kernel_failure_is_wrapped_with_shapes():
    g = chain_graph()
    g.initializers["w"] = np.ones(3, np.float32)  # cannot broadcast with [1, 4]
    with pytest.raises(ShapeError, match=r"node 'mul' \(Mul\).*\(1, 4\):float32, \(3,\):float32"):
        run_float(g, rand(1, 4))


def test_unknown_requested_output():
    with pytest.raises(ShapeError, match="do not exist"):
        run_float(chain_graph(), rand(1, 4), outputs=["nope"])


def test_missing_feed_in_run_graph():
    with pytest.raises(InputDataError, match="needs input"):
        run_graph(chain_graph(), {})


def test_intermediates_are_freed_after_last_use():
    g = chain_graph()
    refs: dict[str, weakref.ref] = {}
    alive_at_add: dict[str, bool] = {}

    def hook(node, k, t):
        if node.name == "add":
            alive_at_add.update({name: r() is not None for name, r in refs.items()})
        refs[node.outputs[k]] = weakref.ref(t)
        return t

    res = run_graph(g, {"x": torch.from_numpy(rand(2, 4))}, outputs=["b", "y"], hook=hook)
    assert alive_at_add == {"a": False, "b": True}  # 'a' freed after Mul, its last reader
    assert set(res) == {"b", "y"}


# ---------------------------------------------------------------------------- batch handling
def batch1_graph(target: list[int], op: str = "Reshape") -> Graph:
    """x[1,64,1,1] -> Reshape(target) (static batch-1 graph, as exported)."""
    node = Node("r", op, ["x", "s"] if op == "Reshape" else ["x"], ["y"])
    inits = {"s": np.array(target, np.int64)} if op == "Reshape" else {}
    values = {"x": TensorInfo(F32, (1, 64, 1, 1)), "y": TensorInfo(F32, (1, 64))}
    return Graph([node], inits, values, ["x"], ["y"])


@pytest.mark.parametrize("target", [[1, 64], [1, -1], [1, 64, 1], [-1, 64]])
def test_reshape_constant_leading_one_follows_batch(target):
    x = rand(4, 64, 1, 1)
    y = run_float(batch1_graph(target), x)["y"]
    assert y.shape[0] == 4 and y.size == x.size
    np.testing.assert_array_equal(y.reshape(4, 64), x.reshape(4, 64))


def test_reshape_without_static_info_uses_count_mismatch():
    g = batch1_graph([1, 64])
    g.values.pop("x")
    g.values["x"] = TensorInfo(F32, None)
    assert run_float(g, rand(3, 64, 1, 1))["y"].shape == (3, 64)


def test_squeeze_without_axes_keeps_batch():
    y = run_float(batch1_graph([], op="Squeeze"), rand(5, 64, 1, 1))["y"]
    assert y.shape == (5, 64)


def test_concat_broadcasts_batch1_constant():
    node = Node("c", "Concat", ["tok", "x"], ["y"], {"axis": 1})
    g = Graph(
        [node], {"tok": np.ones((1, 1, 8), np.float32)}, {"x": TensorInfo(F32, (1, 5, 8))}, ["x"], ["y"]
    )
    y = run_float(g, rand(3, 5, 8))["y"]
    assert y.shape == (3, 6, 8) and np.all(y[:, 0] == 1)


def test_hook_gets_output_index_of_multi_output_nodes():
    node = Node("split", "Split", ["x"], ["a", "b"], {"axis": 1})
    g = Graph([node], {}, {"x": TensorInfo(F32, (1, 4))}, ["x"], ["a", "b"])
    seen = []

    def hook(n, k, t):
        seen.append((k, tuple(t.shape)))
        return t + k

    res = run_graph(g, {"x": torch.zeros(3, 4)}, hook=hook)
    assert seen == [(0, (3, 2)), (1, (3, 2))]
    assert res["a"].sum() == 0 and torch.all(res["b"] == 1)
