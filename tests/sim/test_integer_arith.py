"""Add/Sub/Mul/Div/Pow/Mod, pooling and Quantize/Requantize/Dequantize integer kernels (esp_dl_facts.md §4.4,
§4.5, §4.7, §4.9, §4.11)."""

from __future__ import annotations

import numpy as np
import pytest
from espdl_builders import init, model, node, vi

from espq.sim.integer import IntegerRunner

I8, I16 = np.int8, np.int16


def _binary(op, a, b, ea, eb, eo, target="esp32p4", dtype=I8, **attrs):
    nd = node(op, ["a", "b"], ["y"], **attrs)
    shape = list(np.broadcast_shapes(np.shape(a), np.shape(b)))
    m = model(
        [nd],
        [vi("a", dtype, list(np.shape(a)), ea), vi("b", dtype, list(np.shape(b)), eb)],
        [vi("y", dtype, shape, eo)],
        target=target,
    )
    return IntegerRunner(m).run({"a": np.asarray(a, dtype), "b": np.asarray(b, dtype)}, raw=True)["y"]


def test_add_sub_saturate_raw_integers_with_broadcast():
    a = np.array([[100, -100, 5]], I8)
    b = np.array([[100], [-100]], I8)
    np.testing.assert_array_equal(_binary("Add", a, b, -4, -4, -4), [[127, 0, 105], [0, -128, -95]])
    np.testing.assert_array_equal(_binary("Sub", a, b, -4, -4, -4), [[0, -128, -95], [127, 0, 105]])


def test_add_with_initializer_operand():
    nd = node("Add", ["k", "a"], ["y"])
    m = model(
        [nd],
        [vi("a", I8, [2, 3], -3)],
        [vi("y", I8, [2, 3], -3)],
        [init("k", np.array([[1], [-2]], I8), I8, -3)],
    )
    y = IntegerRunner(m).run({"a": np.full((2, 3), 10, I8)}, raw=True)["y"]
    np.testing.assert_array_equal(y, [[11] * 3, [8] * 3])


@pytest.mark.parametrize(
    ("target", "expect"),
    [("esp32p4", [2, 2, -2, -2, 3]), ("esp32s3", [2, 3, -2, -1, 3]), ("c", [2, 3, -2, -1, 3])],
)
def test_mul_shift_rounding_per_target(target, expect):
    # products 6, 10, -10, -6, 11 shifted by 2: 1.5, 2.5, -2.5, -1.5, 2.75
    a = np.array([3, 5, -5, -3, 11], I8)
    b = np.array([2, 2, 2, 2, 1], I8)
    np.testing.assert_array_equal(_binary("Mul", a, b, -3, -3, -4, target), expect)


def _near_tie_product() -> tuple[int, int, int]:
    """int16 a, b with a·b = m·2^16 + 2^15 − 1 > 2^25: float32 rounds the product up to a tie."""
    for a in range(20000, 32768):
        for m in range(1 << 10, 1 << 14):
            p = m * 65536 + 32767
            if p % a == 0 and p // a < 32768:
                return a, p // a, m
    raise AssertionError("no such product")


def test_mul_int16_c_rounds_product_to_float32_first():
    """§4.5: C converts the int product to float32 (inexact above 2^24) before tool::round."""
    a, b, m = _near_tie_product()
    assert float(np.float32(a * b)) == m * 65536 + 32768  # the float32 product is an exact tie
    got = {t: int(_binary("Mul", [a], [b], 0, 0, 16, t, I16)[0]) for t in ("esp32p4", "esp32s3", "c")}
    assert got == {"esp32p4": m, "esp32s3": m, "c": m + 1}


def test_div_pow_mod_float_math():
    a = np.array([64, -64, 0, 48], I8)  # e -4: 4, -4, 0, 3
    b = np.array([32, 32, 0, -64], I8)  # e -5: 1, 1, 0, -2
    # Div: 4, -4, 0/0 -> 0, -1.5 at e_out -2 -> 16, -16, 0, -6
    np.testing.assert_array_equal(_binary("Div", a, b, -4, -5, -2), [16, -16, 0, -6])
    z = np.array([0, 0, 0, 0], I8)
    np.testing.assert_array_equal(_binary("Div", a, z, -4, -5, -2), [127, -128, 0, 127])  # x/0 saturates
    # Mod: fmod keeps the dividend's sign, mod the divisor's: 3 mod -2 -> 1 (fmod) / -1 (mod)
    np.testing.assert_array_equal(_binary("Mod", a[3:], b[3:], -4, -5, -3, fmod=1), [8])
    np.testing.assert_array_equal(_binary("Mod", a[3:], b[3:], -4, -5, -3, fmod=0), [-8])
    # Pow: 3^(-2) = 0.111 at e_out -7 -> 14.2 -> 14
    np.testing.assert_array_equal(_binary("Pow", a[3:], b[3:], -4, -5, -7), [14])


def _pool_model(op, x_shape, y_shape, e_in, e_out, target="esp32p4", **attrs):
    nd = node(op, ["x"], ["y"], **attrs)
    m = model([nd], [vi("x", I8, x_shape, e_in)], [vi("y", I8, y_shape, e_out)], target=target)
    return IntegerRunner(m)


def test_average_pool_divides_by_full_kernel_area_with_padding():
    x = np.full((1, 2, 2, 1), 9, I8)
    for target, tie in (("esp32p4", 4), ("esp32s3", 5)):
        r = _pool_model(
            "AveragePool", [1, 2, 2, 1], [1, 2, 2, 1], -2, -2, target, kernel_shape=[2, 2], pads=[1, 1, 0, 0]
        )
        y = r.run({"x": np.transpose(x, (0, 3, 1, 2)).astype(np.float32) / 4}, raw=False)["y"]
        # border windows see 1 or 2 real pixels and are still divided by 4 (count_include_pad)
        np.testing.assert_array_equal(y.reshape(2, 2) * 4, [[2, tie], [tie, 9]])  # 9/4 -> 2, 18/4 = 4.5 tie


def test_global_average_pool_and_max_pool():
    x = np.arange(16, dtype=I8).reshape(1, 2, 2, 4)  # NHWC
    g = _pool_model("GlobalAveragePool", [1, 2, 2, 4], [1, 1, 1, 4], -3, -3).run(
        {"x": x.transpose(0, 3, 1, 2) / 8}, raw=False
    )
    np.testing.assert_array_equal(g["y"].reshape(-1) * 8, [6, 7, 8, 9])
    mp = _pool_model(
        "MaxPool", [1, 2, 2, 4], [1, 2, 2, 4], -3, -3, kernel_shape=[2, 2], pads=[1, 1, 1, 1], strides=[2, 2]
    )
    y = mp.run({"x": x}, raw=True)["y"]
    assert y.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(y[0, 0, 0], x[0, 0, 0])  # padding never wins, even over negatives
    neg = -np.abs(x) - 1
    np.testing.assert_array_equal(mp.run({"x": neg.astype(I8)}, raw=True)["y"][0, 1, 1], neg[0, 1, 1])


@pytest.mark.parametrize(
    ("target", "expect"), [("esp32p4", [0, 2, -2, 127, -128]), ("esp32s3", [1, 3, -1, 127, -128])]
)
def test_requantize_and_quantize(target, expect):
    x16 = np.array([2, 10, -6, 32000, -32000], I16)  # e -3 -> e -1: /4 = 0.5, 2.5, -1.5, ...
    nd = node("RequantizeLinear", ["x", "s", "z"], ["y"])
    m = model(
        [nd],
        [vi("x", I16, [5], -3)],
        [vi("y", I8, [5], -1)],
        [init("s", np.array([0.5], np.float32), np.float32), init("z", np.array([0], I8), I8)],
        target=target,
    )
    np.testing.assert_array_equal(IntegerRunner(m).run({"x": x16}, raw=True)["y"], expect)
    left = model([node("RequantizeLinear", ["x"], ["y"])], [vi("x", I8, [2], -1)], [vi("y", I16, [2], -4)])
    np.testing.assert_array_equal(
        IntegerRunner(left).run({"x": np.array([3, -4], I8)}, raw=True)["y"], [24, -32]
    )
    q = model(
        [node("QuantizeLinear", ["x"], ["y"])],
        [vi("x", np.float32, [3])],
        [vi("y", I8, [3], -2)],
        target=target,
    )
    yq = IntegerRunner(q).run({"x": np.array([0.125, 0.625, 100.0], np.float32)}, raw=True)["y"]
    np.testing.assert_array_equal(yq, expect[:2] + [127])
    dq = model([node("DequantizeLinear", ["x"], ["y"])], [vi("x", I8, [2], -2)], [vi("y", np.float32, [2])])
    np.testing.assert_array_equal(
        IntegerRunner(dq).run({"x": np.array([3, -8], I8)}, raw=True)["y"], [0.75, -2.0]
    )
