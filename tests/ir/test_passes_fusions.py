"""fold_batchnorm, batchnorm_to_conv, fuse_add_to_bias, matmul_add_to_gemm, fuse_swish."""

from __future__ import annotations

import numpy as np
import pytest

from espq.ir.passes import batchnorm_to_conv, fold_batchnorm, fuse_add_to_bias, fuse_swish, matmul_add_to_gemm

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand


def _bn_params(c: int, prefix: str = "bn") -> dict[str, np.ndarray]:
    return {
        f"{prefix}_s": rand(c, seed=1, lo=0.5, hi=2.0),
        f"{prefix}_b": rand(c, seed=2),
        f"{prefix}_m": rand(c, seed=3),
        f"{prefix}_v": rand(c, seed=4, lo=0.1, hi=2.0),
    }


def _bn(x: str, y: str, prefix: str = "bn") -> object:
    return node("BatchNormalization", [x] + [f"{prefix}_{k}" for k in "sbmv"], [y], epsilon=1e-3)


# ---------------------------------------------------------------- fold_batchnorm
@pytest.mark.parametrize("with_bias", [False, True])
def test_fold_bn_into_conv(with_bias):
    inits = {"w": rand(4, 3, 3, 3), **_bn_params(4)}
    ins = ["x", "w"]
    if with_bias:
        inits["b"] = rand(4, seed=9)
        ins.append("b")
    nodes = [
        node("Conv", ins, ["c"], name="conv", pads=[1, 1, 1, 1]),
        _bn("c", "y"),
        node("Relu", ["y"], ["z"]),
    ]
    g = build(nodes, inits, {"x": (1, 3, 5, 5)}, {"z": (1, 4, 5, 5)})
    before = g.copy()
    assert fold_batchnorm(g) == 1
    assert ops(g) == ["Conv", "Relu"]
    conv = g.nodes[0]
    assert conv.outputs == ["y"] and len(conv.inputs) == 3 and conv.name == "conv"
    assert g.initializers[conv.inputs[1]].dtype == np.float32
    check_equivalent(before, g)


@pytest.mark.parametrize("group", [1, 2, 6])
def test_fold_bn_into_grouped_convtranspose(group):
    c_in, c_out = 6, 6
    inits = {"w": rand(c_in, c_out // group, 3, 3), "b": rand(c_out, seed=5), **_bn_params(c_out)}
    nodes = [node("ConvTranspose", ["x", "w", "b"], ["c"], strides=[2, 2], group=group), _bn("c", "y")]
    g = build(nodes, inits, {"x": (1, c_in, 4, 4)}, {"y": (1, c_out, 9, 9)})
    before = g.copy()
    assert fold_batchnorm(g) == 1
    assert ops(g) == ["ConvTranspose"]
    check_equivalent(before, g)


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (5,), (3, 5)])
def test_fold_bn_into_gemm(trans_b, c_shape):
    inits = {"B": rand(*((5, 4) if trans_b else (4, 5))), **_bn_params(5)}
    ins = ["x", "B"]
    if c_shape:
        inits["C"] = rand(*c_shape, seed=7)
        ins.append("C")
    nodes = [node("Gemm", ins, ["g"], transB=trans_b, alpha=0.7, beta=1.3), _bn("g", "y")]
    g = build(nodes, inits, {"x": (3, 4)}, {"y": (3, 5)})
    before = g.copy()
    assert fold_batchnorm(g) == 1
    assert ops(g) == ["Gemm"] and g.nodes[0].attrs["beta"] == 1.0
    check_equivalent(before, g)


def test_fold_bn_not_when_conv_output_has_two_readers():
    inits = {"w": rand(4, 3, 1, 1), **_bn_params(4)}
    nodes = [node("Conv", ["x", "w"], ["c"]), _bn("c", "y"), node("Relu", ["c"], ["z"])]
    g = build(nodes, inits, {"x": (1, 3, 2, 2)}, {"y": (1, 4, 2, 2), "z": (1, 4, 2, 2)})
    assert fold_batchnorm(g) == 0
    # nor when the conv output is itself a graph output, nor when the BN params are not constant
    g = build(nodes[:2], inits, {"x": (1, 3, 2, 2)}, {"y": (1, 4, 2, 2), "c": (1, 4, 2, 2)})
    assert fold_batchnorm(g) == 0
    inits2 = dict(inits)
    del inits2["bn_m"]
    g = build(nodes[:2], inits2, {"x": (1, 3, 2, 2), "bn_m": (4,)}, {"y": (1, 4, 2, 2)})
    assert fold_batchnorm(g) == 0


# ---------------------------------------------------------------- batchnorm_to_conv
@pytest.mark.parametrize("shape", [(1, 4, 3, 5), (2, 4, 7)])
def test_batchnorm_to_depthwise_conv(shape):
    g = build([node("Relu", ["x"], ["r"]), _bn("r", "y")], _bn_params(4), {"x": shape}, {"y": shape})
    g.values["r"] = g.values["x"].copy()
    before = g.copy()
    assert fold_batchnorm(g) == 0  # Relu is not foldable
    assert batchnorm_to_conv(g) == 1
    conv = g.nodes[1]
    assert conv.op_type == "Conv" and conv.attrs["group"] == 4 and conv.outputs == ["y"]
    assert g.initializers[conv.inputs[1]].shape == (4, 1) + (1,) * (len(shape) - 2)
    check_equivalent(before, g)


def test_batchnorm_to_conv_skips_2d_input():
    g = build([_bn("x", "y")], _bn_params(4), {"x": (3, 4)}, {"y": (3, 4)})
    assert batchnorm_to_conv(g) == 0


# ---------------------------------------------------------------- fuse_add_to_bias
@pytest.mark.parametrize(
    "op, c_shape, const_first",
    [("Add", (4, 1, 1), False), ("Add", (1, 4, 1, 1), True), ("Add", (), False), ("Sub", (4, 1, 1), False)],
)
def test_fuse_add_into_conv_bias(op, c_shape, const_first):
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4, seed=3), "c": rand(*c_shape, seed=8)}
    ins = ["c", "cv"] if const_first else ["cv", "c"]
    nodes = [node("Conv", ["x", "w", "b"], ["cv"]), node(op, ins, ["y"])]
    g = build(nodes, inits, {"x": (1, 3, 5, 5)}, {"y": (1, 4, 3, 3)})
    before = g.copy()
    assert fuse_add_to_bias(g) == 1
    assert ops(g) == ["Conv"] and g.nodes[0].outputs == ["y"]
    check_equivalent(before, g)


def test_fuse_add_vector_aligned_with_last_axis_is_not_a_bias():
    # a [C] addend broadcasts along the LAST axis (W), not along channels, even when W == C
    inits = {"w": rand(4, 3, 1, 1), "c": rand(4, seed=8)}
    nodes = [node("Conv", ["x", "w"], ["cv"]), node("Add", ["cv", "c"], ["y"])]
    g = build(nodes, inits, {"x": (1, 3, 4, 4)}, {"y": (1, 4, 4, 4)})
    assert fuse_add_to_bias(g) == 0


def test_fuse_add_into_gemm_and_negatives():
    inits = {"B": rand(4, 5), "C": rand(5, seed=2), "c": rand(1, 5, seed=3)}
    nodes = [node("Gemm", ["x", "B", "C"], ["g"], beta=0.5), node("Add", ["c", "g"], ["y"])]
    g = build(nodes, inits, {"x": (3, 4)}, {"y": (3, 5)})
    before = g.copy()
    assert fuse_add_to_bias(g) == 1 and ops(g) == ["Gemm"]
    check_equivalent(before, g)
    # constant - conv is not a bias; a full [1,C,H,W] constant is not per-channel; two readers
    inits = {"w": rand(2, 3, 1, 1), "c": rand(2, seed=1).reshape(1, 2, 1, 1), "big": rand(1, 2, 3, 3)}
    for nodes in (
        [node("Conv", ["x", "w"], ["cv"]), node("Sub", ["c", "cv"], ["y"])],
        [node("Conv", ["x", "w"], ["cv"]), node("Add", ["cv", "big"], ["y"])],
        [node("Conv", ["x", "w"], ["cv"]), node("Add", ["cv", "c"], ["y"]), node("Relu", ["cv"], ["z"])],
    ):
        outs = {"y": (1, 2, 3, 3)} | ({"z": (1, 2, 3, 3)} if len(nodes) == 3 else {})
        g = build(nodes, inits, {"x": (1, 3, 3, 3)}, outs)
        assert fuse_add_to_bias(g) == 0


# ---------------------------------------------------------------- matmul_add_to_gemm
@pytest.mark.parametrize("bias_shape", [None, (6,), (1, 6), ()])
def test_matmul_add_to_gemm(bias_shape):
    inits = {"W": rand(4, 6)}
    nodes = [node("MatMul", ["x", "W"], ["m"])]
    out = "m"
    if bias_shape is not None:
        inits["b"] = rand(*bias_shape, seed=4)
        nodes.append(node("Add", ["m", "b"], ["y"]))
        out = "y"
    g = build(nodes, inits, {"x": (3, 4)}, {out: (3, 6)})
    before = g.copy()
    assert matmul_add_to_gemm(g) == 1
    gemm = g.nodes[0]
    assert ops(g) == ["Gemm"] and gemm.attrs["transB"] == 0 and gemm.outputs == [out]
    assert gemm.inputs[1] == "W"  # B kept as stored: no copy
    assert len(gemm.inputs) == (2 if bias_shape is None else 3)
    check_equivalent(before, g)


def test_matmul_add_to_gemm_negatives():
    inits = {"W": rand(4, 6), "full": rand(3, 6)}
    g = build([node("MatMul", ["x", "W"], ["y"])], inits, {"x": (2, 3, 4)}, {"y": (2, 3, 6)})
    assert matmul_add_to_gemm(g) == 0  # 3-D left input
    g = build([node("MatMul", ["x", "z"], ["y"])], {}, {"x": (3, 4), "z": (4, 6)}, {"y": (3, 6)})
    assert matmul_add_to_gemm(g) == 0  # non-constant right operand
    nodes = [node("MatMul", ["x", "W"], ["m"]), node("Add", ["m", "full"], ["y"])]
    g = build(nodes, inits, {"x": (3, 4)}, {"y": (3, 6)})
    before = g.copy()
    assert matmul_add_to_gemm(g) == 1
    assert ops(g) == ["Gemm", "Add"]  # an [M,N] addend is not a bias: Gemm without C, Add kept
    check_equivalent(before, g)


# ---------------------------------------------------------------- fuse_swish
@pytest.mark.parametrize("order", [0, 1])
def test_fuse_swish(order):
    mul_in = ["c", "s"] if order == 0 else ["s", "c"]
    nodes = [
        node("Conv", ["x", "w"], ["c"]),
        node("Sigmoid", ["c"], ["s"], name="sig"),
        node("Mul", mul_in, ["y"]),
    ]
    g = build(nodes, {"w": rand(2, 2, 1, 1)}, {"x": (1, 2, 3, 3)}, {"y": (1, 2, 3, 3)})
    before = g.copy()
    assert fuse_swish(g) == 1
    assert ops(g) == ["Conv", "Swish"]
    sw = g.nodes[1]
    assert sw.name == "sig/Swish" and sw.inputs == ["c"] and sw.outputs == ["y"] and sw.attrs == {}
    check_equivalent(before, g)  # the helper runs Swish as x·σ(x)


def test_fuse_swish_negatives():
    w = {"w": rand(2, 2, 1, 1)}
    nodes = [
        node("Conv", ["x", "w"], ["c"]),
        node("Sigmoid", ["c"], ["s"]),
        node("Mul", ["c", "s"], ["y"]),
        node("Relu", ["s"], ["z"]),
    ]
    g = build(nodes, w, {"x": (1, 2, 3, 3)}, {"y": (1, 2, 3, 3), "z": (1, 2, 3, 3)})
    assert fuse_swish(g) == 0  # sigmoid read twice
    nodes = [node("Sigmoid", ["x"], ["s"]), node("Mul", ["x", "s"], ["y"])]
    g = build(nodes, {}, {"x": (1, 2)}, {"y": (1, 2)})
    assert fuse_swish(g) == 0  # graph input (ESP-PPQ rule)
    nodes = [node("Relu", ["x"], ["r"]), node("Sigmoid", ["r"], ["s"]), node("Mul", ["x", "s"], ["y"])]
    g = build(nodes, {}, {"x": (1, 2)}, {"y": (1, 2)})
    assert fuse_swish(g) == 0  # Mul's other operand is not the Sigmoid's input
