"""GRU and LSTM kernels of the integer runner (batch 1, ``dl_module_gru.hpp`` / ``dl_module_lstm.hpp``).

No op-test files exist for these ops (the generator failed), so the arithmetic below follows the
ESP-DL module sources and esp_dl_facts.md §3.2 / esp_ppq_facts.md §2.8 and is checked against a float
reference in the tests, not against chip outputs. Assumed arithmetic (quantized paths):

* Gate pre-activations live in int16 with the gate exponent ``g`` (attribute ``gate_exponent``,
  default −8; ESP-PPQ writes −9): ``dotprod`` of a W / R row with x / h is an int32/int64 sum,
  requantised as ``round(float32(acc) · 2^−shift)`` with ``shift = g − (e_x + e_w)`` (resp.
  ``g − (e_h + e_r)``), saturated to int16. The int16 biases B (exponent g) are added to the raw int16
  values; the C ``int16 += int`` wraps.
* Sigmoid / tanh of a gate value come from float tables at exponent g (``math::SigmoidLUT(g, ±6.3)``,
  ``TanhLUT(g, ±3.5)``): entries ``f(i · 2^g)`` for ``0 ≤ i ≤ qmax`` with
  ``qmax = (int)(6.3 / 2^g) + 1`` (3.5 for tanh); ``|index| > qmax`` uses the last entry, negative
  indices use ``1 − table[−i]`` / ``−table[−i]``.
* GRU (linear_before_reset = 1, gate order z, r, n): ``z, r = σ(in + hid)``;
  ``n = tanh_lut(round(in_n + r · hid_n))``; ``h = round((1 − z) · n · 2^−e_y + z · h_prev)`` saturated.
  The state h keeps the Y_h exponent; ``initial_h`` is requantised to it.
* LSTM (gate order i, o, f, c): ``pre = in + Wb + hid + Rb`` (int16, wraps); ``c = round(f · c_prev +
  i · g · 2^−e_c)`` stored as int16 (exponent g; C conversion wraps); ``h = round(o · tanh_lut(c) ·
  2^−e_y)`` saturated. ``initial_h`` / ``initial_c`` are copied raw. bidirectional runs the second
  direction backwards in time.

float32 nodes run ONNX GRU/LSTM in float32 with ``dl::math`` sigmoid/tanh.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import round_f32, saturate, scale_f32, sigmoid_f32, tanh_f32
from espq.targets.rounding import shift_round

F32 = np.float32


def _operand(ctx: IntContext, inputs: list[QTensor | None], i: int) -> tuple[np.ndarray, int] | None:
    """(values in their stored dims, exponent) of input ``i``; None when absent."""
    if i < len(inputs) and inputs[i] is not None:
        return inputs[i].data, inputs[i].exponent
    p = ctx.params.get(i)
    if p is None or p.numel == 0:
        return None
    return p.values().reshape([int(d) for d in p.dims]), (p.exponents[0] if p.exponents else 0)


def _required(ctx: IntContext, inputs: list[QTensor | None], i: int, what: str) -> tuple[np.ndarray, int]:
    v = _operand(ctx, inputs, i)
    if v is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' ({ctx.node.op_type}): input {i} ({what}) is missing")
    return v


def gate_table(exponent: int, bound: float, tanh: bool) -> tuple[np.ndarray, int]:
    """``math::SigmoidLUT`` / ``TanhLUT`` at ``exponent``: (table[0..qmax], qmax)."""
    scale = scale_f32(exponent)
    qmax = int(F32(bound) / scale) + 1
    qmin = int(F32(-bound) / scale) - 1
    qmax = max(qmax, -qmin)
    xs = (np.arange(qmax + 1, dtype=F32) * scale).astype(F32)
    return (tanh_f32(xs) if tanh else sigmoid_f32(xs)), qmax


def lut_get(table: np.ndarray, qmax: int, idx: np.ndarray, tanh: bool) -> np.ndarray:
    """``SigmoidLUT::get`` / ``TanhLUT::get`` for int indices."""
    idx = np.asarray(idx, dtype=np.int64)
    val = table[np.minimum(np.abs(idx), qmax)]
    neg = (-val) if tanh else (F32(1) - val)
    return np.where(idx < 0, neg, val).astype(F32)


def _dot(w: np.ndarray, v: np.ndarray, shift: int) -> np.ndarray:
    """``mat_vec_dotprod``: per row ``truncate16(round(float32(Σ w·v) · 2^−shift))``."""
    acc = w.astype(np.int64) @ v.astype(np.int64)
    return acc.astype(F32) * scale_f32(-shift)


def _wrap16(v: np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=np.int64).astype(np.int16).astype(np.int64)


def _check_batch(ctx: IntContext, x: np.ndarray) -> tuple[int, int, int]:
    if x.ndim != 3:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): X must be 3-D, got {list(x.shape)}"
        )
    layout = int(ctx.attr("layout", 0))
    seq, batch = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
    if batch != 1:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): ESP-DL runs batch 1 only, got batch {batch}"
        )
    return seq, x.shape[2], layout


def _directions(ctx: IntContext, allowed: tuple[str, ...]) -> int:
    direction = ctx.attr("direction", "forward") or "forward"
    if direction not in allowed:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): direction '{direction}' is not supported by "
            f"ESP-DL's kernel; use one of {', '.join(allowed)}"
        )
    return 2 if direction == "bidirectional" else 1


def _q_dtype(ctx: IntContext, k: int, default: np.dtype) -> np.dtype:
    return (
        np.dtype(ctx.out_dtypes[k]) if len(ctx.out_dtypes) > k and ctx.out_dtypes[k] is not None else default
    )


def _q_exp(ctx: IntContext, k: int, default: int) -> int:
    return int(ctx.out_exponents[k]) if len(ctx.out_exponents) > k else default


@register_int("GRU")
def gru(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """GRU, forward, batch 1, linear_before_reset = 1 (see the module docstring)."""
    if int(ctx.attr("linear_before_reset", 0)) != 1:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (GRU): ESP-DL needs linear_before_reset = 1 (PyTorch GRU semantics)"
        )
    _directions(ctx, ("forward",))
    x, e_x = _required(ctx, inputs, 0, "X")
    w, e_w = _required(ctx, inputs, 1, "W")
    r, e_r = _required(ctx, inputs, 2, "R")
    b = _operand(ctx, inputs, 3)
    h0 = _operand(ctx, inputs, 5)
    hidden = int(ctx.attr("hidden_size", r.shape[-1]))
    seq, size, _ = _check_batch(ctx, x)
    xs = x.reshape(seq, size)
    w, r = w.reshape(3 * hidden, size), r.reshape(3 * hidden, hidden)
    if x.dtype == np.float32:
        return _gru_float(ctx, xs, w, r, b, h0, hidden)
    g = int(ctx.attr("gate_exponent", -8))
    dt = _q_dtype(ctx, 0, x.dtype)
    e_y = _q_exp(ctx, 0, e_x)
    e_h = _q_exp(ctx, 1, e_y)
    sig, sig_max = gate_table(g, 6.3, tanh=False)
    tnh, tnh_max = gate_table(g, 3.5, tanh=True)
    h = np.zeros(hidden, np.int64)
    if h0 is not None:  # TensorBase::assign: requantise to the state exponent
        h = saturate(shift_round(h0[0].reshape(-1), e_h - h0[1], ctx.rounding), dt).astype(np.int64)
    bias = b[0].reshape(-1).astype(np.int64) if b is not None else np.zeros(6 * hidden, np.int64)
    out_scale = scale_f32(-e_y)
    ys = []
    for t in range(seq):
        inp = saturate(round_f32(_dot(w, xs[t], g - (e_x + e_w)), ctx.rounding), np.int16).astype(np.int64)
        hid = saturate(round_f32(_dot(r, h, g - (e_h + e_r)), ctx.rounding), np.int16).astype(np.int64)
        inp, hid = _wrap16(inp + bias[: 3 * hidden]), _wrap16(hid + bias[3 * hidden :])
        zr = lut_get(sig, sig_max, inp[: 2 * hidden] + hid[: 2 * hidden], tanh=False)
        z, rg = zr[:hidden], zr[hidden:]
        n_idx = round_f32(inp[2 * hidden :].astype(F32) + rg * hid[2 * hidden :].astype(F32), ctx.rounding)
        n = lut_get(tnh, tnh_max, n_idx, tanh=True)
        temp = ((F32(1) - z) * n * out_scale).astype(F32) + (z * h.astype(F32)).astype(F32)
        h = saturate(round_f32(temp, ctx.rounding), dt).astype(np.int64)
        ys.append(h.copy())
    y = np.stack(ys).astype(dt)
    return [
        QTensor(y.reshape(_y_shape(ctx, seq, 1, hidden)), e_y),
        QTensor(y[-1].reshape(_yh_shape(ctx, 1, hidden)), e_h),
    ]


def _y_shape(ctx: IntContext, seq: int, dirs: int, hidden: int) -> tuple[int, ...]:
    return (seq, dirs, 1, hidden) if int(ctx.attr("layout", 0)) == 0 else (1, seq, dirs, hidden)


def _yh_shape(ctx: IntContext, dirs: int, hidden: int) -> tuple[int, ...]:
    return (dirs, 1, hidden) if int(ctx.attr("layout", 0)) == 0 else (1, dirs, hidden)


def _gru_float(ctx, xs, w, r, b, h0, hidden) -> list[QTensor]:
    bias = b[0].reshape(-1).astype(F32) if b is not None else np.zeros(6 * hidden, F32)
    h = h0[0].reshape(-1).astype(F32) if h0 is not None else np.zeros(hidden, F32)
    ys = []
    for t in range(xs.shape[0]):
        inp = (w.astype(F32) @ xs[t].astype(F32) + bias[: 3 * hidden]).astype(F32)
        hid = (r.astype(F32) @ h + bias[3 * hidden :]).astype(F32)
        zr = sigmoid_f32(inp[: 2 * hidden] + hid[: 2 * hidden])
        z, rg = zr[:hidden], zr[hidden:]
        n = tanh_f32(inp[2 * hidden :] + rg * hid[2 * hidden :])
        h = ((F32(1) - z) * n + z * h).astype(F32)
        ys.append(h.copy())
    y = np.stack(ys)
    return [
        QTensor(y.reshape(_y_shape(ctx, len(ys), 1, hidden)), 0),
        QTensor(h.reshape(_yh_shape(ctx, 1, hidden)), 0),
    ]


@register_int("LSTM")
def lstm(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """LSTM, forward or bidirectional, batch 1 (see the module docstring)."""
    dirs = _directions(ctx, ("forward", "bidirectional"))
    x, e_x = _required(ctx, inputs, 0, "X")
    w, e_w = _required(ctx, inputs, 1, "W")
    r, e_r = _required(ctx, inputs, 2, "R")
    b = _operand(ctx, inputs, 3)
    h0 = _operand(ctx, inputs, 5)
    c0 = _operand(ctx, inputs, 6)
    hidden = int(ctx.attr("hidden_size", r.shape[-1]))
    seq, size, _ = _check_batch(ctx, x)
    xs = x.reshape(seq, size)
    w, r = w.reshape(dirs, 4 * hidden, size), r.reshape(dirs, 4 * hidden, hidden)
    bias = b[0].reshape(dirs, 8 * hidden) if b is not None else None
    hs = h0[0].reshape(dirs, hidden) if h0 is not None else None
    cs = c0[0].reshape(dirs, hidden) if c0 is not None else None
    if x.dtype == np.float32:
        step = _lstm_float_dir
        e_y = e_c = 0
        dt = np.dtype(np.float32)
    else:
        step = _lstm_int_dir
        dt = _q_dtype(ctx, 0, x.dtype)
        e_y = _q_exp(ctx, 0, e_x)
        e_c = _q_exp(ctx, 2, int(ctx.attr("gate_exponent", -8)))
    y = np.zeros((seq, dirs, hidden), dtype=dt)
    y_h = np.zeros((dirs, hidden), dtype=dt)
    y_c = np.zeros((dirs, hidden), dtype=np.float32 if dt == np.float32 else np.int16)
    for d in range(dirs):
        order = range(seq) if d == 0 else range(seq - 1, -1, -1)
        args = (xs, w[d], r[d], None if bias is None else bias[d], None if hs is None else hs[d])
        c_init = None if cs is None else cs[d]
        y_h[d], y_c[d] = step(ctx, args, c_init, hidden, list(order), y[:, d], (e_x, e_w, e_r, e_y, e_c), dt)
    return [
        QTensor(y.reshape(_y_shape(ctx, seq, dirs, hidden)), e_y),
        QTensor(y_h.reshape(_yh_shape(ctx, dirs, hidden)), _q_exp(ctx, 1, e_y)),
        QTensor(y_c.reshape(_yh_shape(ctx, dirs, hidden)), e_c),
    ]


def _lstm_int_dir(ctx, args, c_init, hidden, order, y_out, exps, dt):
    xs, w, r, bias, h_init = args
    e_x, e_w, e_r, e_y, e_c = exps
    g = int(ctx.attr("gate_exponent", -8))
    e_h = _q_exp(ctx, 1, e_y)
    sig, sig_max = gate_table(g, 6.3, tanh=False)
    tnh, tnh_max = gate_table(g, 3.5, tanh=True)
    h = h_init.astype(np.int64) if h_init is not None else np.zeros(hidden, np.int64)
    c = c_init.astype(np.int64) if c_init is not None else np.zeros(hidden, np.int64)
    wb = bias[: 4 * hidden].astype(np.int64) if bias is not None else np.zeros(4 * hidden, np.int64)
    rb = bias[4 * hidden :].astype(np.int64) if bias is not None else np.zeros(4 * hidden, np.int64)
    rescale_y, rescale_c = scale_f32(-e_y), scale_f32(-e_c)
    for t in order:
        inp = saturate(round_f32(_dot(w, xs[t], g - (e_x + e_w)), ctx.rounding), np.int16).astype(np.int64)
        hid = saturate(round_f32(_dot(r, h, g - (e_h + e_r)), ctx.rounding), np.int16).astype(np.int64)
        pre = _wrap16(inp + wb + hid + rb)
        i_g = lut_get(sig, sig_max, pre[:hidden], tanh=False)
        o_g = lut_get(sig, sig_max, pre[hidden : 2 * hidden], tanh=False)
        f_g = lut_get(sig, sig_max, pre[2 * hidden : 3 * hidden], tanh=False)
        g_g = lut_get(tnh, tnh_max, pre[3 * hidden :], tanh=True)
        temp = (f_g * c.astype(F32)).astype(F32) + (i_g * g_g * rescale_c).astype(F32)
        c = _wrap16(round_f32(temp, ctx.rounding))
        temp = (o_g * lut_get(tnh, tnh_max, c, tanh=True) * rescale_y).astype(F32)
        h = saturate(round_f32(temp, ctx.rounding), dt).astype(np.int64)
        y_out[t] = h
    return h.astype(dt), c.astype(np.int16)


def _lstm_float_dir(ctx, args, c_init, hidden, order, y_out, exps, dt):
    xs, w, r, bias, h_init = args
    h = h_init.astype(F32) if h_init is not None else np.zeros(hidden, F32)
    c = c_init.astype(F32) if c_init is not None else np.zeros(hidden, F32)
    bsum = (
        (bias[: 4 * hidden] + bias[4 * hidden :]).astype(F32)
        if bias is not None
        else np.zeros(4 * hidden, F32)
    )
    for t in order:
        pre = (w.astype(F32) @ xs[t].astype(F32) + r.astype(F32) @ h + bsum).astype(F32)
        i_g = sigmoid_f32(pre[:hidden])
        o_g = sigmoid_f32(pre[hidden : 2 * hidden])
        f_g = sigmoid_f32(pre[2 * hidden : 3 * hidden])
        g_g = tanh_f32(pre[3 * hidden :])
        c = (f_g * c + i_g * g_g).astype(F32)
        h = (o_g * tanh_f32(c)).astype(F32)
        y_out[t] = h
    return h, c
