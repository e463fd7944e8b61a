"""fuse_prelu: Keras's decomposed PReLU (tf2onnx: Relu, Neg, Relu, Mul, Add) -> PRelu."""

from __future__ import annotations

import numpy as np

from espq.ir.passes import fuse_prelu, infer_shapes

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand


def _keras_prelu(c: np.ndarray, shape=(1, 4, 5, 6), swap: bool = False, extra_output: bool = False):
    """Conv-free version of tf2onnx's PReLU: y = Relu(x) + Relu(Neg(x)) * c."""
    mul_in = ["c", "rn"] if swap else ["rn", "c"]
    nodes = [
        node("Relu", ["x"], ["pos"]),
        node("Neg", ["x"], ["n"]),
        node("Relu", ["n"], ["rn"]),
        node("Mul", mul_in, ["m"]),
        node("Add", ["m", "pos"] if swap else ["pos", "m"], ["y"]),
    ]
    outputs = {"y": shape, **({"m": shape} if extra_output else {})}
    g = build(nodes, {"c": c}, {"x": shape}, outputs)
    infer_shapes(g)
    return g


def test_per_channel_slope_becomes_torch_layout():
    alpha = rand(1, 4, 1, 1, seed=1, lo=0.05, hi=0.9)
    g = _keras_prelu(-alpha)
    before = g.copy()
    assert fuse_prelu(g) == 1
    assert ops(g) == ["PRelu"]
    (p,) = g.nodes
    assert p.inputs[0] == "x" and p.outputs == ["y"]
    np.testing.assert_array_equal(g.initializers[p.inputs[1]], alpha.reshape(4, 1, 1))
    check_equivalent(before, g)


def test_swapped_operands_2d_and_scalar_slope():
    g = _keras_prelu(-rand(1, 6, seed=2, lo=0.1, hi=0.5), shape=(1, 6), swap=True)
    before = g.copy()
    assert fuse_prelu(g) == 1 and ops(g) == ["PRelu"]
    assert g.initializers[g.nodes[0].inputs[1]].shape == (6,)
    check_equivalent(before, g)
    g = _keras_prelu(np.array(-0.25, np.float32))
    before = g.copy()
    assert fuse_prelu(g) == 1
    check_equivalent(before, g)


def test_look_alikes_stay():
    g = _keras_prelu(-rand(1, 4, 1, 1, seed=3), extra_output=True)  # the Mul is a graph output
    assert fuse_prelu(g) == 0 and len(g.nodes) == 5
    g = _keras_prelu(-rand(2, 4, 1, 1, seed=4), shape=(2, 4, 5, 6))  # slope varies along the batch
    assert fuse_prelu(g) == 0
    g = _keras_prelu(-rand(1, 4, 1, 1, seed=5))
    g.nodes[1].inputs = ["pos"]  # Neg reads another tensor than the positive branch's x
    g.invalidate()
    assert fuse_prelu(g) == 0
