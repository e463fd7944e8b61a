"""Activation kernels of the integer runner: Relu, LeakyRelu, PRelu, Clip, Sigmoid, Tanh, HardSigmoid,
HardSwish, Swish, Elu, Exp, Log, Sqrt, Neg.

Every kernel first asks :func:`espq.sim.integer.kernels_lut.lut_or_none` for the int8 table result
(esp_dl_facts.md §3.3: an S8 node whose ``lut`` attribute names an initializer runs the LUT module).
Otherwise it runs ESP-DL's non-LUT path (§4.6, module sources ``dl_module_<op>.hpp``)::

    temp = float32(x) * DL_SCALE(e_in)           # exact power-of-two scaling
    temp = f(temp)                                # float32 (dl::math helpers, expf/logf/sqrtf)
    y    = truncate(tool::round(temp * DL_RESCALE(e_out)))

evaluated in numpy float32 in the chip's order. The module also holds the float helpers shared by
the other kernel modules (:func:`round_f32`, :func:`round_f64`, :func:`saturate`, :func:`scale_f32`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_lut import lut_or_none
from espq.targets.base import Rounding
from espq.targets.rounding import shift_round

F32 = np.float32
_INT_RANGE = {np.dtype(np.int8): (-128, 127), np.dtype(np.int16): (-32768, 32767)}
_BIG = float(2**31 - 1)


def scale_f32(exponent: int) -> np.float32:
    """``DL_SCALE(exponent)`` = 2^exponent as float32 (``DL_RESCALE(e)`` is ``scale_f32(-e)``)."""
    return F32(2.0 ** int(exponent))


def _finite(x: np.ndarray) -> np.ndarray:
    # float -> int conversion on the chips saturates; NaN converts to INT_MAX (RISC-V fcvt.w.s).
    return np.nan_to_num(x, nan=_BIG, posinf=_BIG, neginf=-_BIG)


def round_f32(x: np.ndarray, rounding: Rounding | str) -> np.ndarray:
    """``tool::round(float)`` (esp_dl_facts.md §4.1): P4 ``fcvt.w.s rne`` (half to even on the float32
    value); other chips ``floorf(x + 0.5)``, whose sum is a float32 addition (ties → +inf). int64 out."""
    x = _finite(np.asarray(x, dtype=F32))
    if Rounding(rounding) is Rounding.HALF_EVEN:
        r = np.rint(x)
    else:
        r = np.floor(x + F32(0.5))
    return np.clip(r.astype(np.float64), -_BIG - 1, _BIG).astype(np.int64)


def round_f64(x: np.ndarray, rounding: Rounding | str) -> np.ndarray:
    """``tool::round(double)``: half up = ``floor(x + 0.5)``; half even = ESP-DL's software version
    (add ±0.5, truncate toward zero, and step back to the even neighbour when the sum is within
    1e-6 of an integer that is odd). int64 out."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=_BIG, posinf=_BIG, neginf=-_BIG)
    if Rounding(rounding) is Rounding.HALF_UP:
        r = np.floor(x + 0.5)
    else:
        shifted = np.where(x < 0, x - 0.5, x + 0.5)
        r = np.trunc(shifted)
        tie = (np.abs(shifted - r) < 1e-6) & (np.mod(r, 2) != 0)
        r = np.where(tie, np.where(x < 0, r + 1, r - 1), r)
    return np.clip(r, -_BIG - 1, _BIG).astype(np.int64)


def saturate(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``tool::truncate``: clamp to the int8/int16 range of ``dtype`` and cast."""
    lo, hi = _INT_RANGE[np.dtype(dtype)]
    return np.clip(v, lo, hi).astype(dtype)


def out_dtype(ctx: IntContext, x: QTensor) -> np.dtype:
    """The output dtype from the file's ValueInfo, else the input's."""
    return np.dtype(ctx.out_dtypes[0]) if ctx.out_dtypes else x.data.dtype


def out_exponent(ctx: IntContext) -> int:
    return int(ctx.out_exponents[0]) if ctx.out_exponents else 0


def activation_input(ctx: IntContext, inputs: list[QTensor | None]) -> QTensor:
    """The activation input 0, with an error naming the node when it is missing."""
    x = inputs[0] if inputs else None
    if x is None:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): input 0 must be an activation tensor"
        )
    if x.data.dtype not in (np.int8, np.int16, np.float32):
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): input dtype {x.data.dtype} is not supported; "
            "ESP-DL runs this op on int8, int16 or float32"
        )
    return x


def _elementwise(
    ctx: IntContext, inputs: list[QTensor | None], f: Callable[[np.ndarray], np.ndarray]
) -> list[QTensor]:
    """The non-LUT float path shared by most activations (§4.6). ``f`` maps float32 -> float32."""
    table = lut_or_none(ctx, inputs)
    if table is not None:
        return table
    x = activation_input(ctx, inputs)
    with np.errstate(all="ignore"):  # log/sqrt of negatives give NaN, as on the chip
        if x.data.dtype == np.float32:
            return [QTensor(np.asarray(f(x.data), dtype=F32), 0)]
        temp = x.data.astype(F32) * scale_f32(x.exponent)
        y = np.asarray(f(temp), dtype=F32) * scale_f32(-out_exponent(ctx))
    e_out = out_exponent(ctx)
    return [QTensor(saturate(round_f32(y, ctx.rounding), out_dtype(ctx, x)), e_out)]


def sigmoid_f32(x: np.ndarray) -> np.ndarray:
    """``dl::math::sigmoid``: ``1.0 / (1.0 + expf(-x))`` with double constants, returned as float."""
    with np.errstate(all="ignore"):
        e = np.exp(-np.asarray(x, dtype=F32)).astype(np.float64)
        return (1.0 / (1.0 + e)).astype(F32)


def tanh_f32(x: np.ndarray) -> np.ndarray:
    """``dl::math::tanh`` = ``2 * sigmoid(2 * x) - 1`` in float32."""
    x = np.asarray(x, dtype=F32)
    return (F32(2) * sigmoid_f32(F32(2) * x) - F32(1)).astype(F32)


def _f32_attr(ctx: IntContext, key: str, default: float) -> np.float32:
    return F32(ctx.attr(key, default))


@register_int("Relu")
def relu(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Relu: an int8 ``lut`` table runs the LUT module; equal exponents → max(x, 0) exactly; else
    round(x·2^(e_in−e_out)) for x ≥ 0 (§4.6). An S16 Relu computes directly and ignores a table
    (``dl_module_relu.hpp`` deserialize since the ModelContext API; ESP-DL releases before it built a
    LUT module for any quant type, esp_dl_facts.md §3.3)."""
    x = activation_input(ctx, inputs)
    table = lut_or_none(ctx, inputs)
    if table is not None:
        return table
    if x.data.dtype == np.float32:
        return [QTensor(np.where(x.data >= 0, x.data, F32(0)).astype(F32), 0)]
    e_out = out_exponent(ctx)
    if e_out == x.exponent:
        return [QTensor(np.maximum(x.data, 0).astype(out_dtype(ctx, x)), e_out)]
    temp = x.data.astype(F32) * scale_f32(x.exponent)
    y = round_f32(temp * scale_f32(-e_out), ctx.rounding)
    return [QTensor(saturate(np.where(temp >= 0, y, 0), out_dtype(ctx, x)), e_out)]


@register_int("LeakyRelu")
def leaky_relu(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """LeakyRelu: negative side ``round(temp · 2^-e_out · alpha)`` (float32, in that order)."""
    alpha = _f32_attr(ctx, "alpha", 0.01)
    table = lut_or_none(ctx, inputs)
    if table is not None:
        return table
    x = activation_input(ctx, inputs)
    if x.data.dtype == np.float32:
        return [QTensor(np.where(x.data >= 0, x.data, x.data * alpha).astype(F32), 0)]
    e_out = out_exponent(ctx)
    temp = x.data.astype(F32) * scale_f32(x.exponent)
    scaled = temp * scale_f32(-e_out)
    y = np.where(temp >= 0, scaled, scaled * alpha)
    return [QTensor(saturate(round_f32(y, ctx.rounding), out_dtype(ctx, x)), e_out)]


@register_int("PRelu")
def prelu(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """PRelu (C kernel ``prelu_11c``, §4.6): negative x → ``floor(x·α / 2^(e_out − e_in − e_α))``
    (arithmetic shift); x ≥ 0 → ``shift_and_round(x, e_out − e_in)``. The slope runs along the last
    axis (ESP-DL takes the channel count from ``shape[3]``; a scalar slope is broadcast)."""
    table = lut_or_none(ctx, inputs)
    if table is not None:
        return table
    x = activation_input(ctx, inputs)
    slope = ctx.params.get(1)
    slope_q = inputs[1] if len(inputs) > 1 else None
    if slope is None and slope_q is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (PRelu): the slope input 1 is missing")
    if slope is not None:
        a = slope.values()
        e_a = slope.exponents[0] if slope.exponents else 0
    else:
        a, e_a = np.asarray(slope_q.data).reshape(-1), slope_q.exponent
    a = a.reshape(-1)
    if x.data.dtype == np.float32:
        af = a.astype(F32) if a.dtype == np.float32 else a.astype(F32) * scale_f32(e_a)
        return [QTensor(np.where(x.data < 0, x.data * af, x.data).astype(F32), 0)]
    e_out = out_exponent(ctx)
    xi = x.data.astype(np.int64)
    prod = xi * a.astype(np.int64)  # broadcasts a per-channel slope along the last axis
    shift = e_out - x.exponent - e_a
    neg = prod >> shift if shift >= 0 else prod << -shift  # DL_RIGHT_SHIFT = floor
    pos = shift_round(xi, e_out - x.exponent, ctx.rounding)
    return [QTensor(saturate(np.where(xi < 0, neg, pos), out_dtype(ctx, x)), e_out)]


@register_int("Clip")
def clip(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Clip (§4.6): clamp the raw input to the raw min/max parameters (input integer domain), then
    ``round(temp · (2^e_in · 2^-e_out))``; float32 nodes clamp the float values."""
    table = lut_or_none(ctx, inputs)
    if table is not None:
        return table
    x = activation_input(ctx, inputs)

    def bound(i: int, default: float) -> np.ndarray:
        p = ctx.params.get(i)
        if p is not None and p.numel:
            return p.values().reshape(-1)[0]
        q = inputs[i] if len(inputs) > i else None
        if q is not None:
            return np.asarray(q.data).reshape(-1)[0]
        return default

    lo_i, hi_i = _INT_RANGE.get(x.data.dtype, (-np.inf, np.inf))
    lo = bound(1, lo_i)
    hi = bound(2, hi_i)
    if x.data.dtype == np.float32:
        return [QTensor(np.clip(x.data, F32(lo), F32(hi)).astype(F32), 0)]
    e_out = out_exponent(ctx)
    clamped = np.clip(x.data.astype(np.int64), int(lo), int(hi)).astype(F32)
    rescale = scale_f32(x.exponent) * scale_f32(-e_out)
    return [QTensor(saturate(round_f32(clamped * rescale, ctx.rounding), out_dtype(ctx, x)), e_out)]


@register_int("Sigmoid")
def sigmoid(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Sigmoid: ``dl::math::sigmoid`` on the dequantised input (§4.6)."""
    return _elementwise(ctx, inputs, sigmoid_f32)


@register_int("Tanh")
def tanh(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Tanh: ``2·sigmoid(2x) − 1`` (§4.6)."""
    return _elementwise(ctx, inputs, tanh_f32)


@register_int("HardSigmoid")
def hard_sigmoid(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """HardSigmoid: ``max(0, min(1, alpha·x + beta))`` in float32 (alpha 0.2, beta 0.5 by default)."""
    alpha, beta = _f32_attr(ctx, "alpha", 0.2), _f32_attr(ctx, "beta", 0.5)
    return _elementwise(ctx, inputs, lambda t: np.clip(alpha * t + beta, F32(0), F32(1)))


def _hard_swish(t: np.ndarray) -> np.ndarray:
    # DL_MAX(0, DL_MIN(1, 0.166667 * temp + 0.5)) * temp: double constants, so evaluated in double.
    td = np.asarray(t, dtype=np.float64)
    return (np.clip(0.166667 * td + 0.5, 0.0, 1.0) * td).astype(F32)


@register_int("HardSwish")
def hard_swish(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """HardSwish: ``x · max(0, min(1, 0.166667·x + 0.5))`` (double constants, as in the module)."""
    return _elementwise(ctx, inputs, _hard_swish)


@register_int("Swish")
def swish(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Swish: ``sigmoid(x) · x``."""
    return _elementwise(ctx, inputs, lambda t: sigmoid_f32(t) * np.asarray(t, dtype=F32))


@register_int("Elu")
def elu(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Elu: ``alpha·(expf(x) − 1)`` for x < 0, x otherwise (alpha default 1.0)."""
    alpha = _f32_attr(ctx, "alpha", 1.0)

    def f(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=F32)
        return np.where(t >= 0, t, alpha * (np.exp(t) - F32(1))).astype(F32)

    return _elementwise(ctx, inputs, f)


@register_int("Exp")
def exp(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Exp: ``expf``."""
    return _elementwise(ctx, inputs, lambda t: np.exp(np.asarray(t, dtype=F32)))


@register_int("Log")
def log(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Log: ``logf`` (NaN for negative inputs, −inf for 0)."""
    return _elementwise(ctx, inputs, lambda t: np.log(np.asarray(t, dtype=F32)))


@register_int("Sqrt")
def sqrt(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Sqrt: ``sqrtf`` (NaN for negative inputs)."""
    return _elementwise(ctx, inputs, lambda t: np.sqrt(np.asarray(t, dtype=F32)))


@register_int("Neg")
def neg(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Neg (``dl_module_neg.hpp``): ``-x`` on the raw integers with −128/−32768 → 127/32767; no
    rescale and no table (the module ignores ``lut``); the output exponent is the input's."""
    x = activation_input(ctx, inputs)
    if x.data.dtype == np.float32:
        return [QTensor((-x.data).astype(F32), 0)]
    e_out = out_exponent(ctx) if ctx.out_exponents else x.exponent
    return [QTensor(saturate(-x.data.astype(np.int64), x.data.dtype), e_out)]
