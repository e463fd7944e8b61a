"""GRU and LSTM kernels of the integer runner (batch 1, ``dl_module_gru.hpp`` / ``dl_module_lstm.hpp``).

The quantized arithmetic lives in :mod:`espq.sim.integer.rnn_arith` (shared with the fake-quant
simulator; the chip facts and what the source leaves open are listed there). This module reads the
node: operands (parameters or activations), exponents from the file's ValueInfos (Y, Y_h, Y_c),
``gate_exponent`` (default −8, as the module's deserializer), ``direction`` (forward or bidirectional;
ESP-DL treats any other value as forward, espq refuses it) and ``layout``.

float32 nodes run ONNX GRU/LSTM in float32 with ``dl::math`` sigmoid/tanh (forward only for GRU here).
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import sigmoid_f32, tanh_f32
from espq.sim.integer.rnn_arith import RnnArith, RnnExponents, gru_codes, lstm_codes

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
    """GRU, batch 1, linear_before_reset = 1 (see the module docstring)."""
    if int(ctx.attr("linear_before_reset", 0)) != 1:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (GRU): ESP-DL needs linear_before_reset = 1 (PyTorch GRU semantics)"
        )
    x, e_x = _required(ctx, inputs, 0, "X")
    dirs = _directions(ctx, ("forward",) if x.dtype == np.float32 else ("forward", "bidirectional"))
    w, e_w = _required(ctx, inputs, 1, "W")
    r, e_r = _required(ctx, inputs, 2, "R")
    b = _operand(ctx, inputs, 3)
    h0 = _operand(ctx, inputs, 5)
    hidden = int(ctx.attr("hidden_size", r.shape[-1]))
    seq, size, _ = _check_batch(ctx, x)
    xs = x.reshape(seq, size)
    if x.dtype == np.float32:
        return _gru_float(ctx, xs, w.reshape(3 * hidden, size), r.reshape(3 * hidden, hidden), b, h0, hidden)
    dt = _q_dtype(ctx, 0, x.dtype)
    e_y = _q_exp(ctx, 0, e_x)
    arith = RnnArith.for_target(ctx.target, int(ctx.attr("gate_exponent", -8)), dt)
    y, y_h = gru_codes(
        arith,
        xs,
        w.reshape(dirs, 3 * hidden, size),
        r.reshape(dirs, 3 * hidden, hidden),
        None if b is None else b[0].reshape(dirs, 6 * hidden),
        None if h0 is None else h0[0].reshape(dirs, hidden),
        RnnExponents(e_x, e_w, e_r, e_y, _q_exp(ctx, 1, e_y)),
    )
    return [
        QTensor(y.reshape(_y_shape(ctx, seq, dirs, hidden)), e_y),
        QTensor(y_h.reshape(_yh_shape(ctx, dirs, hidden)), _q_exp(ctx, 1, e_y)),
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
    if x.dtype != np.float32:
        dt = _q_dtype(ctx, 0, x.dtype)
        e_y = _q_exp(ctx, 0, e_x)
        e_c = _q_exp(ctx, 2, int(ctx.attr("gate_exponent", -8)))
        arith = RnnArith.for_target(ctx.target, int(ctx.attr("gate_exponent", -8)), dt)
        y, y_h, y_c = lstm_codes(
            arith, xs, w, r, bias, hs, cs, RnnExponents(e_x, e_w, e_r, e_y, _q_exp(ctx, 1, e_y), e_c)
        )
        return [
            QTensor(y.reshape(_y_shape(ctx, seq, dirs, hidden)), e_y),
            QTensor(y_h.reshape(_yh_shape(ctx, dirs, hidden)), _q_exp(ctx, 1, e_y)),
            QTensor(y_c.reshape(_yh_shape(ctx, dirs, hidden)), e_c),
        ]
    y = np.zeros((seq, dirs, hidden), dtype=np.float32)
    y_h = np.zeros((dirs, hidden), dtype=np.float32)
    y_c = np.zeros((dirs, hidden), dtype=np.float32)
    for d in range(dirs):
        order = range(seq) if d == 0 else range(seq - 1, -1, -1)
        args = (xs, w[d], r[d], None if bias is None else bias[d], None if hs is None else hs[d])
        y_h[d], y_c[d] = _lstm_float_dir(args, None if cs is None else cs[d], hidden, list(order), y[:, d])
    return [
        QTensor(y.reshape(_y_shape(ctx, seq, dirs, hidden)), 0),
        QTensor(y_h.reshape(_yh_shape(ctx, dirs, hidden)), 0),
        QTensor(y_c.reshape(_yh_shape(ctx, dirs, hidden)), 0),
    ]


def _lstm_float_dir(args, c_init, hidden, order, y_out):
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
