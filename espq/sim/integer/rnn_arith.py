"""GRU / LSTM arithmetic of ESP-DL's quantized modules on integer codes, batch 1.

Shared by the integer runner (:mod:`espq.sim.integer.kernels_rnn`) and the fake-quant simulator
(:mod:`espq.sim.fakequant_rnn`), so the two give the same codes by construction. It follows
``dl_module_lstm.hpp`` / ``dl_module_gru.hpp`` and ``dl_base_dotprod.cpp`` (esp-dl master, 2026-07):

* ``W·x`` and ``R·h`` per gate row (``base::mat_vec_dotprod``) land in int16 at the gate exponent g
  (attribute ``gate_exponent``, default −8; espq and ESP-PPQ write −9). The PIE kernels (row length a
  multiple of ``Target.rnn_dotprod_simd[bits]``, shift ≥ 0) sum exactly and shift with the target
  rounding (P4 half even via ``dl_esp32p4_cfg_round``; S3 adds ``1 << (shift-1)`` to ACCX, half up);
  the C path computes ``tool::round(float32(sum) · 2^−shift)``. Both saturate to int16.
  ``shift = g − (e_x + e_w)`` resp. ``g − (e_h + e_r)`` with e_h the Y_h exponent.
* int16 biases (exponent g) are added to those int16 values; the C ``int16 +=`` wraps.
* sigmoid / tanh come from float tables at exponent g (``math::SigmoidLUT(g, ±6.3)``,
  ``TanhLUT(g, ±3.5)``), indexed by the integer pre-activation, clamped at the table end.
* LSTM (gates i, o, f, c): ``c = round(f·c_prev + i·g·2^−e_c)`` stored in int16 (wraps);
  ``h = sat(round(o·tanh_lut(c)·2^−e_y))``; ``initial_h`` / ``initial_c`` codes are copied raw.
* GRU (linear_before_reset = 1, gates z, r, n): ``z, r = σ(in + hid)`` (int sum, no wrap);
  ``n = tanh_lut(round(in_n + r·hid_n))``; ``h = sat(round((1 − z)·n·2^−e_y + z·h_prev))``;
  ``initial_h`` copied raw (``memcpy``, since the bidirectional GRU of 2025-09).
* bidirectional: the second direction runs backwards in time with its own weights and state.

Not settled by the source (no op-test files exist for these ops, and no board was run): whether the
compiler contracts ``a·b + c·d`` into a fused multiply-add (the float32 sums above are computed
unfused), and S3 ACCX (40-bit) overflow on very long int16 rows (not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from espq.sim.integer.kernels_act import round_f32, saturate, scale_f32, sigmoid_f32, tanh_f32
from espq.targets import Target
from espq.targets.rounding import shift_round

F32 = np.float32


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


def wrap16(v: np.ndarray) -> np.ndarray:
    """C conversion of an int to int16 (two's complement wrap), as int64."""
    return np.asarray(v, dtype=np.int64).astype(np.int16).astype(np.int64)


@dataclass(frozen=True)
class RnnArith:
    """What the arithmetic depends on: gate exponent, target rounding, PIE row multiple (None: C path),
    activation dtype (int8 / int16)."""

    gate: int
    rounding: str
    simd: int | None
    dtype: np.dtype

    @classmethod
    def for_target(cls, target: Target, gate: int, dtype: np.dtype) -> RnnArith:
        """The record for ``target`` at ``dtype``'s width."""
        dt = np.dtype(dtype)
        return cls(int(gate), target.rounding.value, target.rnn_dotprod_simd.get(8 * dt.itemsize), dt)

    def tables(self) -> tuple[tuple[np.ndarray, int], tuple[np.ndarray, int]]:
        return gate_table(self.gate, 6.3, tanh=False), gate_table(self.gate, 3.5, tanh=True)


@dataclass(frozen=True)
class RnnExponents:
    """Exponents of X, W, R, Y, Y_h (the hidden state) and Y_c (LSTM cell state)."""

    x: int
    w: int
    r: int
    y: int
    h: int
    c: int = 0


def dotprod(a: RnnArith, m: np.ndarray, v: np.ndarray, shift: int) -> np.ndarray:
    """``base::mat_vec_dotprod`` into int16: one value per row of ``m`` (int64 array)."""
    acc = m.astype(np.int64) @ v.astype(np.int64)
    if a.simd and m.shape[1] % a.simd == 0 and shift >= 0:
        out = shift_round(acc, shift, a.rounding)
    else:
        out = round_f32(acc.astype(F32) * scale_f32(-shift), a.rounding)
    return np.clip(out, -32768, 32767).astype(np.int64)


def _bias(b: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    if b is None:
        z = np.zeros(n, np.int64)
        return z, z
    b = np.asarray(b, dtype=np.int64).reshape(-1)
    return b[:n], b[n:]


def lstm_codes(
    a: RnnArith,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    e: RnnExponents,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LSTM on codes: ``x`` [T, I]; ``w`` [D, 4H, I]; ``r`` [D, 4H, H]; ``b`` [D, 8H] or None;
    ``h0`` / ``c0`` [D, H] or None. Returns (Y [T, D, H], Y_h [D, H], Y_c [D, H] int16)."""
    dirs, hidden = w.shape[0], r.shape[-1]
    (sig, sig_max), (tnh, tnh_max) = a.tables()
    w_shift, r_shift = a.gate - (e.x + e.w), a.gate - (e.h + e.r)
    rescale_y, rescale_c = scale_f32(-e.y), scale_f32(-e.c)
    seq = x.shape[0]
    y = np.zeros((seq, dirs, hidden), a.dtype)
    y_h = np.zeros((dirs, hidden), a.dtype)
    y_c = np.zeros((dirs, hidden), np.int16)
    for d in range(dirs):
        wb, rb = _bias(None if b is None else b[d], 4 * hidden)
        h = np.zeros(hidden, np.int64) if h0 is None else np.asarray(h0[d], np.int64)
        c = np.zeros(hidden, np.int64) if c0 is None else np.asarray(c0[d], np.int64)
        for t in range(seq) if d == 0 else range(seq - 1, -1, -1):
            pre = wrap16(dotprod(a, w[d], x[t], w_shift) + wb + dotprod(a, r[d], h, r_shift) + rb)
            i_g = lut_get(sig, sig_max, pre[:hidden], tanh=False)
            o_g = lut_get(sig, sig_max, pre[hidden : 2 * hidden], tanh=False)
            f_g = lut_get(sig, sig_max, pre[2 * hidden : 3 * hidden], tanh=False)
            g_g = lut_get(tnh, tnh_max, pre[3 * hidden :], tanh=True)
            temp = (f_g * c.astype(F32)).astype(F32) + (i_g * g_g * rescale_c).astype(F32)
            c = wrap16(round_f32(temp, a.rounding))
            temp = (o_g * lut_get(tnh, tnh_max, c, tanh=True) * rescale_y).astype(F32)
            h = saturate(round_f32(temp, a.rounding), a.dtype).astype(np.int64)
            y[t, d] = h
        y_h[d], y_c[d] = h, c
    return y, y_h, y_c


def gru_codes(
    a: RnnArith,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None,
    h0: np.ndarray | None,
    e: RnnExponents,
) -> tuple[np.ndarray, np.ndarray]:
    """GRU (linear_before_reset = 1) on codes: ``x`` [T, I]; ``w`` [D, 3H, I]; ``r`` [D, 3H, H];
    ``b`` [D, 6H] or None; ``h0`` [D, H] or None. Returns (Y [T, D, H], Y_h [D, H])."""
    dirs, hidden = w.shape[0], r.shape[-1]
    (sig, sig_max), (tnh, tnh_max) = a.tables()
    w_shift, r_shift = a.gate - (e.x + e.w), a.gate - (e.h + e.r)
    rescale = scale_f32(-e.y)
    seq = x.shape[0]
    y = np.zeros((seq, dirs, hidden), a.dtype)
    y_h = np.zeros((dirs, hidden), a.dtype)
    for d in range(dirs):
        wb, rb = _bias(None if b is None else b[d], 3 * hidden)
        h = np.zeros(hidden, np.int64) if h0 is None else np.asarray(h0[d], np.int64)
        for t in range(seq) if d == 0 else range(seq - 1, -1, -1):
            inp = wrap16(dotprod(a, w[d], x[t], w_shift) + wb)
            hid = wrap16(dotprod(a, r[d], h, r_shift) + rb)
            zr = lut_get(sig, sig_max, inp[: 2 * hidden] + hid[: 2 * hidden], tanh=False)
            z, rg = zr[:hidden], zr[hidden:]
            n_idx = round_f32(inp[2 * hidden :].astype(F32) + rg * hid[2 * hidden :].astype(F32), a.rounding)
            n = lut_get(tnh, tnh_max, n_idx, tanh=True)
            temp = ((F32(1) - z) * n * rescale).astype(F32) + (z * h.astype(F32)).astype(F32)
            h = saturate(round_f32(temp, a.rounding), a.dtype).astype(np.int64)
            y[t, d] = h
        y_h[d] = h
    return y, y_h
