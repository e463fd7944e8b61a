"""Gemm/MatMul/Einsum, normalisations, reductions, TopK/Arg*, Softmax family vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import check_op, rand


@pytest.mark.parametrize("trans_a,trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (5,), (3, 5), (1, 1)])
def test_gemm(trans_a, trans_b, c_shape):
    a = rand(4, 3) if trans_a else rand(3, 4)
    b = rand(5, 4) if trans_b else rand(4, 5)
    inputs = [a, ("c", b)] + ([("c", rand(*c_shape))] if c_shape else [])
    check_op("Gemm", inputs, {"transA": trans_a, "transB": trans_b, "alpha": 0.7, "beta": 1.3})


@pytest.mark.parametrize(
    "sa,sb",
    [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 5)), ((3, 4), (4,))],
)
def test_matmul(sa, sb):
    check_op("MatMul", [rand(*sa), rand(*sb)])


@pytest.mark.parametrize(
    "eq,shapes",
    [
        ("ij,jk->ik", [(3, 4), (4, 5)]),
        ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
        ("ii->i", [(4, 4)]),
        ("ij->ji", [(2, 3)]),
    ],
)
def test_einsum(eq, shapes):
    check_op("Einsum", [rand(*s) for s in shapes], {"equation": eq})


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3), (2, 3, 6)])
def test_batch_norm(shape):
    c = shape[1]
    inputs = [rand(*shape), ("c", rand(c)), ("c", rand(c)), ("c", rand(c)), ("c", rand(c, low=0.1, high=2))]
    check_op("BatchNormalization", inputs, {"epsilon": 1e-3})


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 6)])
def test_instance_norm(shape):
    check_op("InstanceNormalization", [rand(*shape), ("c", rand(3)), ("c", rand(3))])


@pytest.mark.parametrize("axis", [-1, -2, 1])
@pytest.mark.parametrize("bias", [False, True])
def test_layer_norm(axis, bias):
    x = rand(2, 3, 4, 5)
    norm_shape = x.shape[axis:]
    inputs = [x, ("c", rand(*norm_shape))] + ([("c", rand(*norm_shape))] if bias else [])
    check_op("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-4}, n_out=3, opset=17)


@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_rms_norm(axis):
    x = rand(2, 3, 4, 5)
    check_op("RMSNormalization", [x, ("c", rand(*x.shape[axis:]))], {"axis": axis, "epsilon": 1e-3}, opset=23)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [-1, 1])
def test_lp_norm(p, axis):
    check_op("LpNormalization", [rand(2, 3, 4)], {"p": p, "axis": axis})


def test_mean_variance_norm():
    check_op("MeanVarianceNormalization", [rand(2, 3, 4, 5)])
    check_op("MeanVarianceNormalization", [rand(2, 3, 4, 5)], {"axes": [1, 2]})


@pytest.mark.parametrize("opset", [18, 21])
def test_group_norm(opset):
    n = 2 if opset == 18 else 4
    check_op(
        "GroupNormalization",
        [rand(2, 4, 3, 3), ("c", rand(n)), ("c", rand(n))],
        {"num_groups": 2},
        opset=opset,
    )


@pytest.mark.parametrize("size", [3, 5])
def test_lrn(size):
    check_op("LRN", [rand(2, 6, 3, 4)], {"size": size, "alpha": 1e-2, "beta": 0.75, "bias": 2.0})


REDUCE = [
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
]  # fmt: skip


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([0, -1], 0), (None, 1), (None, 0)])
def test_reduce(op, axes, keepdims):
    x = rand(2, 3, 4, low=0.5, high=1.5) if op in ("ReduceLogSum", "ReduceProd") else rand(2, 3, 4)
    inputs = [x] + ([("c", np.array(axes, np.int64))] if axes is not None else [])
    check_op(op, inputs, {"keepdims": keepdims})


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax"])
def test_reduce_axes_attribute_opset11(op):
    check_op(op, [rand(2, 3, 4)], {"axes": [0, 2], "keepdims": 0}, opset=11)


def test_reduce_noop_with_empty_axes():
    check_op("ReduceSum", [rand(2, 3)], {"noop_with_empty_axes": 1})


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (-1, 0, 0), (1, 1, 1)])
def test_arg(op, axis, keepdims, last):
    x = np.round(rand(3, 4, 5))  # ties
    check_op(op, [x], {"axis": axis, "keepdims": keepdims, "select_last_index": last})


@pytest.mark.parametrize("k,axis,largest", [(2, -1, 1), (3, 1, 0), (1, 0, 1)])
def test_topk(k, axis, largest):
    x = np.round(rand(3, 4, 5) * 2) / 2
    check_op("TopK", [x, ("c", np.array([k], np.int64))], {"axis": axis, "largest": largest}, n_out=2)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis,opset", [(-1, 13), (1, 13), (1, 11), (2, 11)])
def test_softmax(op, axis, opset):
    check_op(op, [rand(2, 3, 4, 5)], {"axis": axis}, opset=opset)
