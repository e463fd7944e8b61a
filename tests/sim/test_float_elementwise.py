"""Element-wise float kernels vs onnxruntime (math, activations, arithmetic, logic, casts, Q/DQ)."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import check_op, rand

UNARY = [
    "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Sign", "Floor", "Ceil", "Round", "Relu", "Sigmoid",
    "Tanh", "Erf", "Sin", "Cos", "Tan", "Atan", "Sinh", "Cosh", "Asinh", "Softsign", "Softplus", "Mish",
    "IsNaN", "HardSwish",
]  # fmt: skip
SHAPES = [(7,), (2, 3, 5), (3, 4, 2, 2)]


@pytest.mark.parametrize("op", UNARY)
@pytest.mark.parametrize("shape", SHAPES)
def test_unary(op, shape):
    x = rand(*shape)
    if op in ("Log", "Sqrt"):
        x = np.abs(x) + 0.1
    if op == "Round":
        x = np.round(x * 2) / 2  # exact .5 ties: half to even
    check_op(op, [x])


@pytest.mark.parametrize("op", ["Asin", "Acos", "Atanh"])
def test_unary_unit_range(op):
    check_op(op, [rand(3, 4, low=-0.9, high=0.9)])


def test_acosh():
    check_op("Acosh", [rand(3, 4, low=1.0, high=4.0)])


def test_log_sqrt_negative_give_nan():
    x = np.array([-1.0, 0.0, 4.0], dtype=np.float32)
    check_op("Log", [x])
    check_op("Sqrt", [x])


@pytest.mark.parametrize(
    "op,attrs",
    [
        ("LeakyRelu", {}),
        ("LeakyRelu", {"alpha": 0.2}),
        ("Elu", {"alpha": 0.5}),
        ("Celu", {"alpha": 2.0}),
        ("Selu", {}),
        ("Selu", {"alpha": 1.5, "gamma": 2.0}),
        ("ThresholdedRelu", {"alpha": 0.5}),
        ("HardSigmoid", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("Gelu", {}),
        ("Gelu", {"approximate": "tanh"}),
        ("Shrink", {"lambd": 1.0, "bias": 0.5}),
    ],
)
def test_activation_attrs(op, attrs):
    check_op(op, [rand(2, 3, 4, 5)], attrs, opset=20 if op == "Gelu" else 18)


@pytest.mark.parametrize("attrs", [{}, {"detect_negative": 0}, {"detect_positive": 0}])
def test_isinf(attrs):
    x = np.array([1.0, np.inf, -np.inf, np.nan, -2.0], dtype=np.float32)
    check_op("IsInf", [x], attrs)


@pytest.mark.parametrize("slope_shape", [(1,), (3, 1, 1), (4,)])
def test_prelu(slope_shape):
    check_op("PRelu", [rand(2, 3, 5, 4), ("c", rand(*slope_shape))])


BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"]
BCAST = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 5))]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", BCAST)
def test_binary_float(op, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1])
    if op == "Pow":
        a = np.abs(a) + 0.1
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(np.float32)
    if op.startswith(("Equal", "Greater", "Less")):
        a, b = np.round(a), np.round(b)  # make ties happen
    check_op(op, [a, b])


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Equal", "Less"])
def test_binary_int64(op):
    a = RNG_INT(3, 4)
    b = np.where(RNG_INT(3, 4) == 0, 3, RNG_INT(3, 4)).astype(np.int64)
    check_op(op, [a, b])


def RNG_INT(*shape):
    return np.random.default_rng(sum(shape)).integers(-9, 10, size=shape).astype(np.int64)


def test_pow_int_exponent():
    check_op("Pow", [rand(3, 4), ("c", np.array(2, dtype=np.int64))])


@pytest.mark.parametrize("fmod", [0, 1])
def test_mod_int(fmod):
    a = RNG_INT(4, 5)
    b = np.array([3, -3, 4, -2, 7], dtype=np.int64)
    check_op("Mod", [a, b], {"fmod": fmod})


def test_mod_float_fmod():
    check_op("Mod", [rand(4, 5), rand(5, low=0.5, high=2.0)], {"fmod": 1})


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
def test_logic(op):
    a = rand(3, 4) > 0
    b = rand(4) > 0
    check_op(op, [a, b])


def test_not():
    check_op("Not", [rand(3, 4) > 0])


@pytest.mark.parametrize("op", ["Min", "Max", "Sum", "Mean"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_variadic(op, n):
    shapes = [(2, 3, 4), (3, 4), (1, 4)][:n]
    check_op(op, [rand(*s) for s in shapes])


def test_where():
    check_op("Where", [rand(2, 3, 4) > 0, rand(3, 4), rand(2, 1, 4)])


@pytest.mark.parametrize(
    "inputs_kind,opset",
    [("both", 13), ("min", 13), ("max", 13), ("none", 13)],
)
def test_clip_inputs(inputs_kind, opset):
    x = rand(2, 3, 4)
    lo = ("c", np.array(-1.0, dtype=np.float32)) if inputs_kind in ("both", "min") else None
    hi = ("c", np.array(0.5, dtype=np.float32)) if inputs_kind in ("both", "max") else None
    check_op("Clip", [x, lo, hi], opset=opset)


def test_clip_attrs_opset6():
    x = rand(2, 3, 4)
    got = check_op("Clip", [x], {"min": -1.0, "max": 0.5}, opset=6)
    assert got[0].min() >= -1.0 and got[0].max() <= 0.5


@pytest.mark.parametrize("to", [1, 6, 7, 9, 10, 2, 3])
def test_cast(to):
    check_op("Cast", [rand(3, 5, low=-100, high=100)], {"to": to})


def test_cast_like():
    check_op("CastLike", [rand(3, 5, low=-10, high=10), ("c", np.zeros(1, dtype=np.int32))])


@pytest.mark.parametrize(
    "zp_dtype,per_axis",
    [
        (np.uint8, False),
        (np.int8, False),
        (np.int16, False),
        (None, False),
        (np.uint8, True),
        (np.int8, True),
    ],
)
def test_quantize_dequantize(zp_dtype, per_axis):
    x = rand(2, 3, 4, low=-5, high=5)
    scale = np.array([0.05, 0.02, 0.1], dtype=np.float32) if per_axis else np.array(0.04, dtype=np.float32)
    inputs = [x, ("c", scale)]
    if zp_dtype is not None:
        zp = np.array([3, 0, 1] if per_axis else 2, dtype=zp_dtype)
        inputs.append(("c", zp))
    q = check_op("QuantizeLinear", inputs, {"axis": 1}, opset=21 if zp_dtype is np.int16 else 19)[0]
    dq_inputs = [q, ("c", scale)] + ([inputs[2]] if zp_dtype is not None else [])
    check_op("DequantizeLinear", dq_inputs, {"axis": 1}, opset=21 if zp_dtype is np.int16 else 19)


def test_quantize_ties_half_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0], dtype=np.float32)
    got = check_op("QuantizeLinear", [x, ("c", np.array(1.0, np.float32)), ("c", np.array(0, np.int8))])[0]
    assert got.tolist() == [0, 2, 2, 0, -2, 127, -128]


def test_identity_dropout():
    x = rand(2, 3)
    check_op("Identity", [x])
    check_op("Dropout", [x], n_out=2)


@pytest.mark.parametrize("op", ["BitwiseAnd", "BitwiseOr", "BitwiseXor"])
def test_bitwise(op):
    check_op(op, [RNG_INT(3, 4), RNG_INT(4)])
