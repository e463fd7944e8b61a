"""Forward weight layouts (espq.export.weights) against the inverse transforms of
espq.espdl.layout, plus explicit byte orders (esp_dl_facts.md §2.5)."""

from __future__ import annotations

import numpy as np
import pytest

from espq.espdl.layout import to_original
from espq.export.weights import conv_weight_layout, gemm_weight_layout, matmul_weight_layout, to_int
from espq.ir.spec import TensorSpec
from espq.targets import get_target

TARGETS = ["esp32p4", "esp32s3", "c"]


def _w(shape, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, size=shape).astype(np.int64)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("n", [1, 8, 16, 24, 37])
@pytest.mark.parametrize("kernel", [(3, 3), (1, 1), (5,), (1,)])
def test_conv_regular_roundtrip(target, bits, n, kernel):
    t = get_target(target)
    w = _w((n, 5) + kernel)
    flat, dims, tag = conv_weight_layout(w, t, bits, depthwise=False)
    assert dims == list(kernel) + [5, n]
    back = to_original(flat, dims, tag, "Conv", depthwise=False)
    np.testing.assert_array_equal(back, w)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("n", [3, 16, 24, 40])
@pytest.mark.parametrize("kernel", [(3, 3), (3,)])
def test_conv_depthwise_roundtrip(target, bits, n, kernel):
    t = get_target(target)
    w = _w((n, 1) + kernel, 1)
    flat, dims, tag = conv_weight_layout(w, t, bits, depthwise=True)
    assert dims == list(kernel) + [n, 1]
    np.testing.assert_array_equal(to_original(flat, dims, tag, "Conv", depthwise=True), w)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("n", [10, 16, 31, 64])
def test_gemm_and_matmul_roundtrip(target, bits, n):
    t = get_target(target)
    w_cn = _w((20, n), 2)
    flat, dims, tag = gemm_weight_layout(w_cn, t, bits)
    assert dims == [1, 1, 20, n]
    np.testing.assert_array_equal(to_original(flat, dims, tag, "Gemm"), w_cn.T)
    w3 = _w((2, 20, n), 3)
    flat, dims, tag = matmul_weight_layout(w3, t, bits)
    assert dims == [2, 20, n]
    np.testing.assert_array_equal(to_original(flat, dims, tag, "MatMul"), w3)


def test_blocked_byte_order_and_tags():
    p4 = get_target("esp32p4")
    # N = 18 output channels, C = 2, 1x1 kernel: block of 16 channels innermost, then 2 leftovers n, c
    w = np.arange(18 * 2).reshape(18, 2, 1, 1)
    flat, dims, tag = conv_weight_layout(w, p4, 8, depthwise=False)
    assert tag == "(N/16)HWC16_UNALIGNED" and dims == [1, 1, 2, 18]
    # first 16 values: c = 0 of channels 0..15 (w[n, 0] = 2n); then c = 1 of channels 0..15
    np.testing.assert_array_equal(flat[:16], 2 * np.arange(16))
    np.testing.assert_array_equal(flat[16:32], 2 * np.arange(16) + 1)
    np.testing.assert_array_equal(flat[32:], [32, 33, 34, 35])
    assert conv_weight_layout(w[:16], p4, 16, False)[2] == "(N/8)HWC8"
    c = get_target("c")
    assert conv_weight_layout(w, c, 8, False)[2] == "NHWC"
    assert conv_weight_layout(np.zeros((4, 1, 3, 3)), c, 8, True)[2] == "HWCN"
    assert conv_weight_layout(np.zeros((4, 1, 3)), c, 8, True)[2] == "WCN"
    # plain regular = OHWI
    np.testing.assert_array_equal(conv_weight_layout(w, c, 8, False)[0], w.reshape(-1))


def test_to_int_per_channel_and_saturation():
    spec = TensorSpec(bits=8, exponent=(-1, -2), axis=0)
    q = to_int(np.array([[1.25, -100.0], [0.375, 0.125]]), spec)
    # channel 0: x*2 -> 2.5 -> 2 (half even), -200 -> -128; channel 1: x*4 -> 1.5 -> 2, 0.5 -> 0
    np.testing.assert_array_equal(q, [[2, -128], [2, 0]])
    # parameters are rounded half to even whatever the chip's runtime rounding (rules.PARAMETER_ROUNDING)
    q = to_int(np.array([1.25, -0.75, 0.75]), TensorSpec(bits=8, exponent=-1))
    np.testing.assert_array_equal(q, [2, -2, 2])
