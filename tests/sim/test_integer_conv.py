"""Conv / Gemm / MatMul integer arithmetic (esp_dl_facts.md §4.2, §4.3) on crafted models and op tests."""

from __future__ import annotations

import numpy as np
import pytest
from espdl_builders import ZOO, conv_weight, init, model, node, optest_cases, vi

from espq.errors import UnsupportedOpError
from espq.sim.integer import IntegerRunner, check_test_values

I8 = np.int8


def _ref_conv(x_nhwc, w, bias, pads, stride):
    """Plain integer convolution (NHWC in, [B, Ho, Wo, N] int64 out) for cross-checking."""
    pt, pl, pb, pr = pads
    xp = np.pad(x_nhwc.astype(np.int64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    n, c, kh, kw = w.shape
    ho = (xp.shape[1] - kh) // stride + 1
    wo = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((xp.shape[0], ho, wo, n), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]  # B, kh, kw, C
            out[:, i, j, :] = np.einsum("bhwc,nchw->bn", patch, w.astype(np.int64))
    return out + bias


def _conv_model(w, bias, target, e_in, e_w, e_out, blocked, pads=(1, 1, 1, 1), stride=1, relu=False):
    n, c, kh, kw = w.shape
    h = wd = 6
    ho = (h + pads[0] + pads[2] - kh) // stride + 1
    wo = (wd + pads[1] + pads[3] - kw) // stride + 1
    inits = [conv_weight("w", w, e_w, blocked), init("b", bias.astype(np.int32), np.int32, e_in + e_w)]
    nd = node(
        "Conv",
        ["x", "w", "b"],
        ["y"],
        pads=list(pads),
        strides=[stride, stride],
        dilations=[1, 1],
        group=1,
        activation="Relu" if relu else "Linear",
    )
    return model(
        [nd], [vi("x", I8, [1, h, wd, c], e_in)], [vi("y", I8, [1, ho, wo, n], e_out)], inits, target=target
    )


@pytest.mark.parametrize(("target", "blocked"), [("esp32p4", True), ("esp32s3", True), ("c", False)])
@pytest.mark.parametrize("relu", [False, True])
def test_conv_matches_integer_reference(target, blocked, relu):
    rng = np.random.default_rng(1)
    w = rng.integers(-60, 60, (35, 5, 3, 3)).astype(I8)
    bias = rng.integers(-3000, 3000, 35)
    x = rng.integers(-128, 128, (1, 6, 6, 5)).astype(I8)
    m = _conv_model(w, bias, target, -5, -6, -4, blocked, pads=(1, 0, 2, 1), stride=2, relu=relu)
    y = IntegerRunner(m).run({"x": x}, raw=True)["y"]
    acc = _ref_conv(x, w, bias, (1, 0, 2, 1), 2)
    # shift = -4 - (-5) - (-6) = 7
    q = np.floor((acc + 64) / 128) if target != "esp32p4" else np.round(acc / 128)
    ref = np.clip(np.maximum(q, 0) if relu else q, -128, 127)
    assert y.dtype == I8 and y.shape == ref.shape == (1, 4, 3, 35)
    np.testing.assert_array_equal(y, ref)


def test_per_channel_shifts_on_p4():
    w = np.ones((2, 1, 1, 1), dtype=I8) * 3
    w_t = conv_weight("w", w, [-2, -4])
    nd = node("Conv", ["x", "w"], ["y"], pads=[0, 0, 0, 0], strides=[1, 1], dilations=[1, 1], group=1)
    m = model([nd], [vi("x", I8, [1, 1, 1, 1], 0)], [vi("y", I8, [1, 1, 1, 2], 0)], [w_t])
    # acc = 3·x; shifts s_n = e_out − e_in − e_w[n] = 2 and 4
    y = IntegerRunner(m).run({"x": np.array([[[[40]]]], dtype=I8)}, raw=True)["y"]
    np.testing.assert_array_equal(y.reshape(-1), [30, 8])  # 120/4 = 30, 120/16 = 7.5 -> 8 (half even)
    with pytest.raises(UnsupportedOpError, match="per-channel"):
        IntegerRunner(m, "esp32s3").run({"x": np.zeros((1, 1, 1, 1), I8)}, raw=True)


def _gemm_model(w_nc, bias, target, e_in, e_w, e_out, blocked, bias_dtype=np.int32):
    n, c = w_nc.shape
    inits = [conv_weight("w", w_nc.reshape(n, c, 1, 1), e_w, blocked)]
    ins = ["x", "w"]
    if bias is not None:
        inits.append(init("b", np.asarray(bias, dtype=bias_dtype), bias_dtype, e_in + e_w))
        ins.append("b")
    nd = node("Gemm", ins, ["y"], activation="Linear", transB=0)
    return model([nd], [vi("x", I8, [1, c], e_in)], [vi("y", I8, [1, n], e_out)], inits, target=target)


def test_s3_int8_accumulator_saturates_in_kernel_order():
    """64 MACs of 127·127 in channel order: +40 products overflow 2^19 − 1 before −24 come back."""
    c = 64
    w = np.full((17, c), 127, dtype=I8)
    x = np.array([[127] * 40 + [-127] * 24], dtype=I8)
    exact = 16 * 127 * 127  # 258064
    saturated = (1 << 19) - 1 - 24 * 127 * 127  # 137191
    runs = {}
    for target in ("esp32s3", "esp32p4"):
        m = _gemm_model(w, None, target, 0, 0, 12, blocked=True)
        runs[target] = IntegerRunner(m).run({"x": x}, raw=True)["y"].reshape(-1)
    # S3: the 16 aligned channels use 20-bit QACC lanes; the 17th (leftover) uses the 40-bit ACCX
    assert runs["esp32s3"][0] == int(np.floor(saturated / 4096 + 0.5)) == 33
    assert runs["esp32s3"][16] == round(exact / 4096) == 63
    np.testing.assert_array_equal(runs["esp32p4"], 63)


def test_s3_int8_bias_keeps_low_20_bits():
    w = np.zeros((17, 4), dtype=I8)
    bias = np.full(17, (1 << 20) + 5)
    m = _gemm_model(w, bias, "esp32s3", 0, 0, 0, blocked=True)
    y = IntegerRunner(m).run({"x": np.zeros((1, 4), I8)}, raw=True)["y"].reshape(-1)
    assert list(y[:16]) == [5] * 16  # aligned: 20-bit field, (2^20 + 5) mod 2^20
    assert y[16] == 127  # leftover channel keeps the full int32 bias, saturated to int8


def test_c_int32_accumulator_wraps_and_p4_saturates():
    w = np.ones((1, 1), dtype=I8)
    bias = [2**31 - 11]
    x = np.array([[100]], dtype=I8)
    out = {}
    for target in ("c", "esp32p4"):
        m = _gemm_model(w, bias, target, 0, 0, 24, blocked=target != "c")
        out[target] = int(IntegerRunner(m).run({"x": x}, raw=True)["y"][0, 0])
    assert out["c"] == -128  # (2^31 + 89) wraps to -2^31 + 89, / 2^24 -> -128
    assert out["esp32p4"] == 127  # QACC saturates at 2^31 - 1 -> 128 -> clamp 127


@pytest.mark.parametrize(
    ("acc", "p4", "s3"),
    [(6, 2, 2), (10, 2, 3), (-10, -2, -2), (-6, -2, -1), (7, 2, 2), (-7, -2, -2)],
)
def test_rounding_ties_half_even_vs_half_up(acc, p4, s3):
    """acc / 4: P4 rounds ties to even, S3 and C ties toward +inf (§4.1)."""
    w = np.ones((1, 1), dtype=I8)
    got = {}
    for target in ("esp32p4", "esp32s3", "c"):
        m = _gemm_model(w, [acc], target, 0, 0, 2, blocked=target != "c")
        got[target] = int(IntegerRunner(m).run({"x": np.zeros((1, 1), I8)}, raw=True)["y"][0, 0])
    assert (got["esp32p4"], got["esp32s3"], got["c"]) == (p4, s3, s3)


def test_matmul_dynamic_native_and_packed_rhs():
    rng = np.random.default_rng(3)
    a = rng.integers(-100, 100, (3, 40)).astype(I8)
    b = rng.integers(-100, 100, (40, 20)).astype(I8)
    ref = np.clip(np.round((a.astype(np.int64) @ b) / 2**9), -128, 127)  # shift = 0 - (-4) - (-5)
    # packed (older exports): the dynamic operand holds the (N/16)HWC16 bytes in a [K, N] tensor
    packed = conv_weight("p", b.T.reshape(20, 40, 1, 1), 0, blocked=True).values().reshape(40, 20)
    for layout, rhs in (("native_kn", b), ("packed", packed)):
        nd = node("MatMul", ["a", "b"], ["y"], activation="Linear", input1_layout=layout)
        ins = [vi("a", I8, [3, 40], -4), vi("b", I8, [40, 20], -5)]
        m = model([nd], ins, [vi("y", I8, [3, 20], 0)])
        y = IntegerRunner(m).run({"a": a, "b": rhs}, raw=True)["y"]
        np.testing.assert_array_equal(y, ref, err_msg=layout)


def _case_id(p):
    return f"{p.parent.parent.name}/{p.parent.name}/{p.stem}"


CASES = optest_cases(["Conv", "Gemm", "MatMul", "ConvTranspose"], per_group=3)


@pytest.mark.parametrize("path", CASES, ids=[_case_id(p) for p in CASES])
def test_optests_conv_like(path):
    rep = check_test_values(path)
    assert rep.ok, rep.format()


@pytest.mark.parametrize("target", ["c", "esp32p4", "esp32s3"])
@pytest.mark.parametrize("case", ["1_16_kshap_16_16", "1_31_kshap_32_31", "1_64_kshap_32_64"])
def test_zoo_gemm_optests(target, case):
    path = ZOO / f"optest_{target}_gemm_ishap_{case}_relu_s8.espdl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rep = check_test_values(path)
    assert rep.ok, rep.format()


@pytest.mark.parametrize(
    ("name", "target"), [("tutorial_3gemm_p4", "esp32p4"), ("tutorial_3gemm_s3", "esp32s3")]
)
def test_zoo_tutorials(name, target):
    path = ZOO / f"{name}.espdl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rep = check_test_values(path, target)
    assert rep.ok and len(rep.tensors) >= 1, rep.format()


def test_s3_saturation_bound_handles_minus_128():
    """|−128| does not fit int8: the overflow bound must be computed in a wider type."""
    w = np.full((16, 64), -128, dtype=I8)
    x = np.array([[-128] * 40 + [127] * 24], dtype=I8)
    saturated = (1 << 19) - 1 - 24 * 127 * 128  # 134143 after +40·16384 hits the 20-bit ceiling
    m = _gemm_model(w, None, "esp32s3", 0, 0, 11, blocked=True)
    y = IntegerRunner(m).run({"x": x}, raw=True)["y"].reshape(-1)
    assert np.floor(saturated / 2048 + 0.5) == 65  # the exact sum 265216 would give 129.5 -> 127
    np.testing.assert_array_equal(y, 65)


def test_s3_depthwise_saturates_in_kh_kw_order():
    """7×7 depthwise: 33 products of +127·127 (raster order) pass 2^19 − 1 before 16 negative ones."""
    w = np.full((16, 1, 7, 7), 127, dtype=I8)
    taps = np.array([127] * 33 + [-127] * 16, dtype=I8).reshape(7, 7)
    x = np.broadcast_to(taps[None, :, :, None], (1, 7, 7, 16)).copy()
    wt = init("w", w.transpose(2, 3, 0, 1).reshape(-1), I8, 0, "(N/16)HWC16", dims=[7, 7, 16, 1])
    nd = node("Conv", ["x", "w"], ["y"], pads=[0, 0, 0, 0], strides=[1, 1], dilations=[1, 1], group=16)
    out = {}
    for target in ("esp32s3", "esp32p4"):
        m = model(
            [nd], [vi("x", I8, [1, 7, 7, 16], 0)], [vi("y", I8, [1, 1, 1, 16], 12)], [wt], target=target
        )
        out[target] = IntegerRunner(m).run({"x": x}, raw=True)["y"].reshape(-1)
    saturated = (1 << 19) - 1 - 16 * 127 * 127  # 266223 -> /4096 = 65.0
    np.testing.assert_array_equal(out["esp32s3"], np.floor(saturated / 4096 + 0.5))
    np.testing.assert_array_equal(out["esp32p4"], np.round(17 * 127 * 127 / 4096))  # exact: 66.9 -> 67
