"""Rounding and fixed-point primitives of ESP-DL, for numpy arrays and torch tensors alike.

Facts (esp_dl §4.1):

* ``tool::round(x)``: ESP32-P4/S31 round half to even; every other chip ``floor(x + 0.5)`` (ties toward
  +inf, also for negatives: -2.5 -> -2).
* ``tool::shift_and_round(v, s)``: ``s <= 0`` -> ``v * 2^-s`` in 64 bits, saturated to the type of ``v``;
  ``s > 0`` -> half-up ``(v + 2^(s-1)) >> s`` or half-even (floor, then +1 if the remainder is above half,
  or equal to half and the floor is odd). No 8/16-bit saturation inside: callers clamp afterwards.
* Saturation ranges: [-2^(b-1), 2^(b-1) - 1].

Values: real = integer * 2^exponent. Per-channel exponents/shifts are 1-D and broadcast along ``axis``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from espq.errors import ConfigError
from espq.targets.base import Rounding

Array = Any  # np.ndarray | torch.Tensor


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _mode(mode: Rounding | str) -> Rounding:
    try:
        return Rounding(mode)
    except ValueError:
        raise ConfigError(
            f"unknown rounding mode {mode!r}; use one of {[m.value for m in Rounding]}"
        ) from None


def _float(x: Any) -> Array:
    """``x`` as a floating array/tensor (float inputs keep their precision; ints become float64)."""
    if _is_torch(x):
        return x if x.is_floating_point() else x.to(torch.float64)
    a = np.asarray(x)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def round_half_even(x: Array) -> Array:
    """Round to nearest, ties to even (P4 ``tool::round``); keeps the float dtype."""
    x = _float(x)
    return torch.round(x) if _is_torch(x) else np.rint(x)


def round_half_up(x: Array) -> Array:
    """``floor(x + 0.5)``: ties toward +inf, so 2.5 -> 3 and -2.5 -> -2 (S3/C ``tool::round``)."""
    x = _float(x)
    return torch.floor(x + 0.5) if _is_torch(x) else np.floor(x + 0.5)


def round_by_mode(x: Array, mode: Rounding | str) -> Array:
    """Round with ``mode`` (``"half_even"`` or ``"half_up"``)."""
    return round_half_even(x) if _mode(mode) is Rounding.HALF_EVEN else round_half_up(x)


def _per_axis(v: Any, ndim: int, axis: int | None, like: Any) -> Array:
    """Reshape a scalar or 1-D per-channel value so that it broadcasts along ``axis`` of an ``ndim`` array."""
    if _is_torch(like):
        t = torch.as_tensor(v, device=like.device)
    else:
        t = np.asarray(v)
    if t.ndim == 0 or axis is None:
        return t
    if t.ndim != 1:
        raise ConfigError(f"per-channel values must be 1-D, got shape {tuple(t.shape)}")
    ax = axis % ndim
    shape = [1] * ndim
    shape[ax] = t.shape[0]
    return t.reshape(shape)


def _int64(x: Any) -> Array:
    if _is_torch(x):
        return x.to(torch.int64)
    return np.asarray(x).astype(np.int64)


def clamp_int(x: Array, bits: int) -> Array:
    """Saturate to [-2^(bits-1), 2^(bits-1) - 1] (``tool::truncate``)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return torch.clamp(x, lo, hi) if _is_torch(x) else np.clip(x, lo, hi)


def shift_round(
    acc: Array,
    shift: int | Array,
    mode: Rounding | str,
    axis: int | None = None,
    acc_bits: int = 64,
) -> Array:
    """``tool::shift_and_round``: ``acc / 2^shift`` rounded with ``mode``, exact on int64.

    ``shift > 0`` divides with rounding (computed as floor plus a remainder test, so it cannot overflow);
    ``shift <= 0`` multiplies by ``2^-shift`` and saturates to ``acc_bits`` (the C type of ``acc``: 32 or
    64). ``shift`` may be a 1-D per-channel array applied along ``axis``. Returns int64; the caller clamps
    to 8/16 bits (facts esp_dl §4.1).
    """
    m = _mode(mode)
    v = _int64(acc)
    tch = _is_torch(v)
    s = _int64(_per_axis(shift, v.ndim, axis, v))
    where = torch.where if tch else np.where

    # right shift with rounding; shifts >= 64 give 0 for every int64 value (|v| / 2^64 <= 1/2, tie -> 0)
    sr = s.clamp(1, 63) if tch else np.clip(s, 1, 63)
    one = torch.ones_like(sr) if tch else np.ones_like(sr)
    q = v >> sr
    r = v & ~((-one) << sr)  # low sr bits, non-negative
    half = one << (sr - 1)
    if m is Rounding.HALF_UP:
        up = r >= half
    else:
        up = (r > half) | ((r == half) & ((q & 1) == 1))
    rounded = q + (up.to(torch.int64) if tch else up.astype(np.int64))
    right = where(s >= 64, 0 * rounded, rounded)

    # left shift (s <= 0), saturated to acc_bits
    k = (-s).clamp(0, 63) if tch else np.clip(-s, 0, 63)
    zero = 0 * (v + k)  # broadcast shape of v and k
    hi = zero + ((1 << (acc_bits - 1)) - 1)
    lo = zero + (-(1 << (acc_bits - 1)))
    big = -s > 63
    over = (v > (hi >> k)) | (big & (v > 0))  # v * 2^k fits iff lo >> k <= v <= hi >> k
    under = (v < (lo >> k)) | (big & (v < 0))
    left = where(over, hi, where(under, lo, where(over | under, zero, v + zero) << k))
    return where(s > 0, right, left)


def quantize(
    x: Array,
    exponent: int | Array,
    bits: int,
    mode: Rounding | str,
    axis: int | None = None,
) -> Array:
    """Float -> saturated integers with value = int * 2^exponent (QuantizeLinear, §4.9).

    ``q = clamp(round_mode(x * 2^-exponent), bits)``; the power-of-two scaling is exact (``ldexp``).
    ``exponent`` may be a 1-D per-channel array along ``axis``. Returns int64.
    """
    xf = _float(x)
    e = _per_axis(exponent, xf.ndim, axis, xf)
    if _is_torch(xf):
        scaled = torch.ldexp(xf, -_int64(e).to(xf.device))
    else:
        scaled = np.ldexp(xf, -np.asarray(e, dtype=np.int64))
    return _int64(clamp_int(round_by_mode(scaled, mode), bits))


def dequantize(q: Array, exponent: int | Array, axis: int | None = None, float64: bool = False) -> Array:
    """Integers -> float ``q * 2^exponent`` (DequantizeLinear, §4.9): float32, or float64 if asked
    (use float64 for 32/40/64-bit values such as biases, which float32 cannot hold exactly)."""
    e = _per_axis(exponent, _int64(q).ndim, axis, q)
    if _is_torch(q):
        qf = q.to(torch.float64 if float64 else torch.float32)
        return torch.ldexp(qf, _int64(e).to(q.device).to(qf.dtype)).to(qf.dtype)
    qf = np.asarray(q).astype(np.float64 if float64 else np.float32)
    return np.ldexp(qf, np.asarray(e, dtype=np.int64)).astype(qf.dtype)


def lut16_index(q: Array, entries: int, mode: Rounding | str) -> Array:
    """Index into an int16 look-up table with ``entries`` entries for int16 inputs ``q`` (§3.3).

    ``step = 65536 // (entries - 1)`` (a power of two; 65536 entries mean step 1); the nearest pivot
    ``(q + 32768) / step`` is taken with ties rounded by ``mode`` (the target's ``lut_index_tie``).
    """
    step = 65536 // (entries - 1)
    log2 = step.bit_length() - 1
    if step != 1 << log2:
        raise ConfigError(f"int16 LUT with {entries} entries has step {step}, which is not a power of two")
    return shift_round(_int64(q) + 32768, log2, mode)
