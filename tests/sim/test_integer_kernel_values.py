"""Integer kernels (activations, reductions, norms, comparisons) on hand-computed values (esp_dl §4)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_context import param, q, run_op

from espq.sim.integer.kernels_act import round_f32, round_f64
from espq.sim.integer.kernels_reduce import sqrt_newton
from espq.sim.integer.rnn_arith import gate_table, lut_get

F32 = np.float32


# ---------------------------------------------------------------- rounding helpers (§4.1)
def test_round_f32_modes():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5], F32)
    assert round_f32(x, "half_even").tolist() == [0, 2, 2, 0, -2, -2]
    assert round_f32(x, "half_up").tolist() == [1, 2, 3, 0, -1, -2]


def test_round_f32_half_up_uses_a_float32_sum():
    # floorf(x + 0.5): 0.49999997f + 0.5 rounds to 1.0f in float32, so the chip gives 1
    x = np.array([np.nextafter(F32(0.5), F32(0))], F32)
    assert round_f32(x, "half_up").tolist() == [1]
    assert round_f32(x, "half_even").tolist() == [0]


def test_round_f32_nan_and_inf_saturate():
    assert round_f32(np.array([np.nan, np.inf, -np.inf], F32), "half_up").tolist() == [
        2**31 - 1,
        2**31 - 1,
        -(2**31),
    ]


def test_round_f64_software_half_even_tolerance():
    x = np.array([2.5, 3.5, -2.5, 2.5000001, 2.4], np.float64)
    assert round_f64(x, "half_even").tolist() == [2, 4, -2, 2, 2]  # 2.5000001 counts as a tie
    assert round_f64(x, "half_up").tolist() == [3, 4, -2, 3, 2]


def test_sqrt_newton_close_to_sqrt():
    x = np.array([0.0, 1e-4, 0.25, 2.0, 12.5, 900.0], F32)
    got = sqrt_newton(x)
    assert got[0] == 0
    np.testing.assert_allclose(got[1:], np.sqrt(x[1:]), rtol=2e-6)


# ---------------------------------------------------------------- activations (§4.6)
def test_lut_dispatch_int8_uses_table():
    table = param("Sigmoid_lut_0", np.arange(127, -129, -1).astype(np.int8), -7)
    (y,) = run_op(
        "Sigmoid",
        [q([-128, 0, 127], -4)],
        attrs={"lut": "Sigmoid_lut_0"},
        out_exponents=[-7],
        out_dtypes=[np.int8],
        initializers={"Sigmoid_lut_0": table},
    )
    assert y.data.tolist() == [127, -1, -128] and y.exponent == -7


def test_sigmoid_int16_float_path():
    (y,) = run_op(
        "Sigmoid", [q([0, 32767, -32768], -10, np.int16)], out_exponents=[-15], out_dtypes=[np.int16]
    )
    # 0.5 * 2^15 = 16384; sigmoid(32) = 1.0f -> 32768 saturates; sigmoid(-32) * 2^15 ~ 4e-10 -> 0
    assert y.data.tolist() == [16384, 32767, 0]


def test_int16_relu_ignores_a_table_int8_relu_uses_it():
    """Current ESP-DL builds the LUT module for an int8 Relu with a ``lut`` only; an S16 Relu computes
    max(x, 0) even when the file carries a (coarse, 257-entry) int16 table, as ESP-PPQ's exports do."""
    coarse = param("Relu_lut_0", np.zeros(257, np.int16), 0)  # a table that would zero everything
    (y16,) = run_op(
        "Relu",
        [q([-300, 5, 1000], 0, np.int16)],
        attrs={"lut": "Relu_lut_0"},
        out_exponents=[0],
        out_dtypes=[np.int16],
        initializers={"Relu_lut_0": coarse},
    )
    assert y16.data.tolist() == [0, 5, 1000]
    table8 = param("Relu_lut_1", np.full(256, 7, np.int8), 0)
    (y8,) = run_op(
        "Relu",
        [q([-3, 5], 0)],
        attrs={"lut": "Relu_lut_1"},
        out_exponents=[0],
        out_dtypes=[np.int8],
        initializers={"Relu_lut_1": table8},
    )
    assert y8.data.tolist() == [7, 7]


def test_relu_rescale_rounds_by_target():
    x = q([-4, 3, 5], -1, np.int16)
    (p4,) = run_op("Relu", [x], "esp32p4", out_exponents=[0], out_dtypes=[np.int16])
    (s3,) = run_op("Relu", [x], "esp32s3", out_exponents=[0], out_dtypes=[np.int16])
    assert p4.data.tolist() == [0, 2, 2]  # 1.5 -> 2, 2.5 -> 2 (half even)
    assert s3.data.tolist() == [0, 2, 3]  # 2.5 -> 3 (half up)


def test_prelu_negative_side_floors():
    slope = param("slope", np.array([[[16384]]], np.int16), -16)  # 0.25
    (y,) = run_op(
        "PRelu",
        [q([-1, -3, 5], -2, np.int16), None],
        params={1: slope},
        out_exponents=[-2],
        out_dtypes=[np.int16],
    )
    # -1 * 0.25 = -0.25 -> floor -1 (an arithmetic shift, not rounding); -0.75 -> -1; 5 unchanged
    assert y.data.tolist() == [-1, -1, 5]


def test_leaky_relu_int16():
    (y,) = run_op(
        "LeakyRelu",
        [q([-10, 10], 0, np.int16)],
        attrs={"alpha": 0.25},
        out_exponents=[-1],
        out_dtypes=[np.int16],
    )
    assert y.data.tolist() == [-5, 20]


def test_hard_swish_int16():
    (y,) = run_op(
        "HardSwish", [q([-4096, 0, 1024, 4096], -10, np.int16)], out_exponents=[-10], out_dtypes=[np.int16]
    )
    # x = -4, 0, 1, 4: hardswish = 0, 0, 0.666667, 4
    assert y.data.tolist() == [0, 0, 683, 4096]


def test_clip_raw_bounds_then_rescale():
    lo, hi = param("lo", np.array(-20, np.int8), -3), param("hi", np.array(40, np.int8), -3)
    (y,) = run_op(
        "Clip",
        [q([-100, 10, 100], -3), None, None],
        params={1: lo, 2: hi},
        out_exponents=[-2],
        out_dtypes=[np.int8],
    )
    assert y.data.tolist() == [-10, 5, 20]


def test_neg_saturates_without_rescale():
    (y,) = run_op("Neg", [q([-128, 5, 0], -3)], out_exponents=[-3], out_dtypes=[np.int8])
    assert y.data.tolist() == [127, -5, 0]


def test_log_float_nan_for_negative():
    (y,) = run_op("Log", [q([np.e, -1.0], 0, np.float32)])
    assert y.data[0] == pytest.approx(1.0) and np.isnan(y.data[1])


# ---------------------------------------------------------------- softmax (§4.8)
def test_softmax_int8_has_no_max_subtraction():
    (y,) = run_op("Softmax", [q([[0, 0], [127, 127]], 0)], attrs={"axis": -1})
    assert y.data.dtype == np.float32
    assert y.data[0].tolist() == [0.5, 0.5]
    assert np.isnan(y.data[1]).all()  # expf(127) overflows float32: inf / inf
    (y16,) = run_op("Softmax", [q([[127, 127]], 0, np.int16)], attrs={"axis": -1})
    assert y16.data[0].tolist() == [0.5, 0.5]  # int16 subtracts the max


def test_softmax_axis_0():
    (y,) = run_op("Softmax", [q([[0, 4], [0, 0]], -2)], attrs={"axis": 0})
    np.testing.assert_allclose(y.data[:, 0], [0.5, 0.5])
    np.testing.assert_allclose(y.data[:, 1], [np.e / (np.e + 1), 1 / (np.e + 1)], rtol=1e-6)


def test_log_softmax_int8():
    (y,) = run_op("LogSoftmax", [q([[1, 1]], 0)], attrs={"axis": -1})
    np.testing.assert_allclose(y.data, [[-np.log(2), -np.log(2)]], rtol=1e-6)


# ---------------------------------------------------------------- resize (§4.10)
def test_resize_nearest_scales_and_sizes():
    x = q(np.array([10, 20], np.int8).reshape(1, 2, 1), -3)
    scales = param("scales", np.array([1, 1, 2], F32))
    (y,) = run_op(
        "Resize", [x, None, None], attrs={"mode": "nearest"}, params={2: scales}, out_exponents=[-3]
    )
    assert y.data.reshape(-1).tolist() == [10, 10, 20, 20]
    sizes = param("sizes", np.array([1, 1, 3], np.int64))
    (y,) = run_op(
        "Resize", [x, None, None, None], attrs={"mode": "nearest"}, params={3: sizes}, out_exponents=[-3]
    )
    assert y.data.reshape(-1).tolist() == [10, 10, 20]  # src = (int)(o * 0.6667)


def test_resize_linear_half_pixel_1d():
    x = q(np.array([0, 64], np.int8).reshape(1, 2, 1), 0)
    scales = param("scales", np.array([1, 1, 2], F32))
    (y,) = run_op(
        "Resize",
        [x, None, None],
        attrs={"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
        params={2: scales},
        out_exponents=[0],
        out_dtypes=[np.int8],
    )
    assert y.data.reshape(-1).tolist() == [0, 16, 48, 64]


# ---------------------------------------------------------------- comparisons, scatter (§4.11)
def test_compare_broadcast_bool():
    (y,) = run_op("Greater", [q([[1, 2, 3]]), q([[2]])])
    assert y.data.dtype == np.bool_ and y.data.tolist() == [[False, False, True]]
    (y,) = run_op("LessOrEqual", [q([[1, 2, 3]]), q([[2]])])
    assert y.data.tolist() == [[True, True, False]]


def test_scatter_nd_add_and_mul_saturate_raw():
    idx = param("idx", np.array([[0], [0]], np.int64))
    (y,) = run_op(
        "ScatterND", [q([100, 0, 0], -3), None, q([20, 20], -3)], attrs={"reduction": "add"}, params={1: idx}
    )
    assert y.data.tolist() == [127, 0, 0]
    idx1 = param("idx", np.array([[1]], np.int64))
    (y,) = run_op(
        "ScatterND", [q([1, 10], -3), None, q([20], -3)], attrs={"reduction": "mul"}, params={1: idx1}
    )
    assert y.data.tolist() == [1, 127]  # raw 200, no exponent rescale
    (y,) = run_op("ScatterND", [q([1, 10], -3), None, q([-7], -3)], params={1: idx1})
    assert y.data.tolist() == [1, -7]


# ---------------------------------------------------------------- reductions (§4.11)
def _axes(*a):
    return param("axes", np.array(a, np.int64))


def test_reduce_sum_shift_rounding_per_target():
    x = q([[2, 3], [-1, -2]], -2)
    kw = dict(attrs={"keepdims": 0}, params={1: _axes(1)}, out_exponents=[-1], out_dtypes=[np.int8])
    (p4,) = run_op("ReduceSum", [x, None], "esp32p4", **kw)
    (c,) = run_op("ReduceSum", [x, None], "c", **kw)
    assert p4.data.tolist() == [2, -2]  # 2.5 -> 2, -1.5 -> -2
    assert c.data.tolist() == [3, -1]  # half up


def test_reduce_sum_square_and_l1():
    x = q([[3, -4]], -1)
    kw = dict(attrs={"keepdims": 1}, params={1: _axes(-1)}, out_exponents=[-1], out_dtypes=[np.int8])
    (ss,) = run_op("ReduceSumSquare", [x, None], "esp32p4", **kw)
    assert ss.data.tolist() == [[12]]  # 25 / 2 = 12.5 -> 12 (half even)
    (l1,) = run_op("ReduceL1", [x, None], "esp32s3", **kw)
    assert l1.data.tolist() == [[7]]


def test_reduce_mean_l2_max_all_axes():
    x = q([1, 2, 4], 0)
    (m,) = run_op("ReduceMean", [x, None], attrs={"keepdims": 0}, out_exponents=[-1], out_dtypes=[np.int8])
    assert m.data.tolist() == [5] and m.data.shape == (1,)  # 7/3*2 = 4.67; full reduction -> [1]
    (l2,) = run_op("ReduceL2", [q([3, 4], 0), None], out_exponents=[-4], out_dtypes=[np.int8])
    assert l2.data.tolist() == [80]
    (mx,) = run_op("ReduceMax", [q([[3, -4], [5, 1]], -2), None], params={1: _axes(0)}, out_exponents=[-2])
    assert mx.data.tolist() == [[5, 1]]


def test_reduce_prod_and_log_sum_exp():
    (p,) = run_op("ReduceProd", [q([2, 3, -4], 0), None], out_exponents=[1], out_dtypes=[np.int8])
    assert p.data.tolist() == [-12]  # -24 / 2
    (lse,) = run_op("ReduceLogSumExp", [q([0, 0, 0, 0], 0), None], out_exponents=[-4], out_dtypes=[np.int8])
    assert lse.data.tolist() == [22]  # ln 4 * 16 = 22.18


# ---------------------------------------------------------------- normalisations
def test_layer_norm_int8():
    scale = param("s", np.array([64, 64], np.int8), -6)
    bias = param("b", np.array([0, 32], np.int8), -6)
    (y,) = run_op(
        "LayerNormalization",
        [q([[1, -1]], 0), None, None],
        attrs={"axis": -1, "epsilon": 1e-5},
        params={1: scale, 2: bias},
        out_exponents=[-5],
        out_dtypes=[np.int8],
    )
    assert y.data.tolist() == [[32, -16]]  # (±1 · 0.999995 + (0, 0.5)) · 32


def test_rms_norm_int8():
    scale = param("s", np.array([1.0, 0.5], F32))
    (y,) = run_op(
        "RMSNormalization",
        [q([[3, 4]], 0), None],
        attrs={"axis": -1, "epsilon": 0.0},
        params={1: scale},
        out_exponents=[-6],
        out_dtypes=[np.int8],
    )
    assert y.data.tolist() == [[54, 36]]  # x / sqrt(12.5) * scale * 64


def test_lp_norm_p1_p2():
    (y1,) = run_op("LpNormalization", [q([[1, -3]], -2)], attrs={"axis": -1, "p": 1}, out_exponents=[-6])
    assert y1.data.tolist() == [[16, -48]]
    (y2,) = run_op(
        "LpNormalization", [q([[3, 4], [0, 0]], -2)], attrs={"axis": -1, "p": 2}, out_exponents=[-6]
    )
    assert y2.data.tolist() == [[38, 51], [0, 0]]


# ---------------------------------------------------------------- GRU / LSTM against a float reference
def test_gate_tables():
    tab, qmax = gate_table(-8, 6.3, tanh=False)
    assert qmax == 1614 - 1 and tab[0] == 0.5
    got = lut_get(tab, qmax, np.array([-256, 0, 256, 5000]), tanh=False)
    np.testing.assert_allclose(
        got, [1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.exp(-6.3))], atol=1e-3
    )
    tt, tmax = gate_table(-8, 3.5, tanh=True)
    np.testing.assert_allclose(lut_get(tt, tmax, np.array([-128]), tanh=True), [np.tanh(-0.5)], rtol=1e-6)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _quant(x, e, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.rint(x * 2.0**-e), info.min, info.max).astype(dtype)


def _rnn_data(gates, hidden=8, size=6, seq=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, (seq, 1, size))
    w = rng.uniform(-0.5, 0.5, (1, gates * hidden, size))
    r = rng.uniform(-0.5, 0.5, (1, gates * hidden, hidden))
    b = rng.uniform(-0.3, 0.3, (1, 2 * gates * hidden))
    xq, wq, rq, bq = (
        _quant(x, -6, np.int8),
        _quant(w, -8, np.int8),
        _quant(r, -8, np.int8),
        _quant(b, -8, np.int16),
    )
    deq = (xq * 2.0**-6, wq[0] * 2.0**-8, rq[0] * 2.0**-8, bq[0] * 2.0**-8)
    params = {1: param("W", wq, -8), 2: param("R", rq, -8), 3: param("B", bq, -8)}
    return q(xq, -6), params, deq


def test_gru_int8_close_to_float_reference():
    hidden = 8
    xq, params, (x, w, r, b) = _rnn_data(3, hidden)
    y, y_h = run_op(
        "GRU",
        [xq, None, None, None],
        attrs={"hidden_size": hidden, "linear_before_reset": 1},
        params=params,
        out_exponents=[-7, -7],
        out_dtypes=[np.int8, np.int8],
    )
    h = np.zeros(hidden)
    ref = []
    for t in range(x.shape[0]):
        gi, gh = w @ x[t, 0] + b[: 3 * hidden], r @ h + b[3 * hidden :]
        z, rr = _sig(gi[:hidden] + gh[:hidden]), _sig(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])
        n = np.tanh(gi[2 * hidden :] + rr * gh[2 * hidden :])
        h = (1 - z) * n + z * h
        ref.append(h)
    got = y.data.reshape(-1, hidden) * 2.0**-7
    assert y.data.shape == (5, 1, 1, hidden) and y_h.data.shape == (1, 1, hidden)
    np.testing.assert_allclose(got, np.array(ref), atol=4 * 2.0**-7)
    assert np.array_equal(y_h.data.reshape(-1), y.data[-1].reshape(-1))


def test_lstm_int8_close_to_float_reference():
    hidden = 8
    xq, params, (x, w, r, b) = _rnn_data(4, hidden, seed=1)
    y, y_h, y_c = run_op(
        "LSTM",
        [xq, None, None, None],
        attrs={"hidden_size": hidden},
        params=params,
        out_exponents=[-7, -7, -8],
        out_dtypes=[np.int8, np.int8, np.int16],
    )
    h, c = np.zeros(hidden), np.zeros(hidden)
    ref = []
    for t in range(x.shape[0]):
        pre = w @ x[t, 0] + r @ h + b[: 4 * hidden] + b[4 * hidden :]
        i, o, f = _sig(pre[:hidden]), _sig(pre[hidden : 2 * hidden]), _sig(pre[2 * hidden : 3 * hidden])
        c = f * c + i * np.tanh(pre[3 * hidden :])
        h = o * np.tanh(c)
        ref.append(h)
    np.testing.assert_allclose(y.data.reshape(-1, hidden) * 2.0**-7, np.array(ref), atol=4 * 2.0**-7)
    np.testing.assert_allclose(y_c.data.reshape(-1) * 2.0**-8, c, atol=4 * 2.0**-8)
    assert y_c.data.dtype == np.int16 and y_h.data.shape == (1, 1, hidden)
