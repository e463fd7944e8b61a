"""Normalisation kernels of the integer runner: LayerNormalization, LpNormalization, RMSNormalization.

All three compute in float32 inside (esp_dl_facts.md §3.2 "float internals"; module sources
``dl_module_layer_normalization.hpp``, ``dl_module_lp_normalization.hpp``,
``dl_module_rms_normalization.hpp``, ``dl_base_norm.cpp``). The normalised axis range is
``[axis, rank)`` flattened (``inner``); everything before it is ``outer``. Sums run sequentially in
C order. Formulas per op are in each kernel's docstring.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import (
    activation_input,
    out_dtype,
    out_exponent,
    round_f32,
    saturate,
    scale_f32,
)
from espq.sim.integer.kernels_reduce import sqrt_newton
from espq.sim.integer.kernels_softmax import seq_sum

F32 = np.float32


def inv_sqrt(x: np.ndarray) -> np.ndarray:
    """``dl::math::fast_inv_sqrt`` as ``1.0f / sqrtf(x)`` in float32."""
    with np.errstate(all="ignore"):
        return (F32(1) / np.sqrt(np.asarray(x, dtype=F32))).astype(F32)


def _outer_inner(ctx: IntContext, x: np.ndarray) -> tuple[np.ndarray, int]:
    """``x`` reshaped to (outer, inner) around the node's ``axis`` (default −1), and the axis."""
    axis = int(ctx.attr("axis", -1))
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis < max(x.ndim, 1):
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): axis {ctx.attr('axis')} out of range for "
            f"rank {x.ndim}"
        )
    inner = int(np.prod(x.shape[axis:], dtype=np.int64))
    return x.reshape(-1, inner), axis


def _param_values(ctx: IntContext, inputs: list[QTensor | None], i: int) -> tuple[np.ndarray, int] | None:
    """(values, exponent) of the optional parameter input ``i`` (initializer or activation)."""
    p = ctx.params.get(i)
    if p is not None:
        return p.values(), (p.exponents[0] if p.exponents else 0)
    q = inputs[i] if len(inputs) > i else None
    if q is not None:
        return np.asarray(q.data).reshape(-1), q.exponent
    return None


def _as_f32(vals: np.ndarray, exponent: int) -> np.ndarray:
    """Float32 values of a parameter: float data as is, integers times 2^exponent."""
    if np.issubdtype(vals.dtype, np.floating):
        return vals.astype(F32)
    return (vals.astype(F32) * scale_f32(exponent)).astype(F32)


@register_int("LayerNormalization")
def layer_norm(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """LayerNormalization, quantized path (per row of ``inner`` elements)::

        mean = float(int_sum · 1.0 / inner)               # double division, stored as float
        var  = Σ (x − mean)²  (float32, sequential)
        mean *= 2^e_in;  var *= 2^e_in · 2^e_in;  var /= inner
        inv  = 1 / sqrt_newton(var + epsilon)
        y    = round(((x·2^e_in − mean)·inv · scale·2^e_s + bias·2^e_b) · 2^−e_out)

    float32 nodes run the same steps on float values (mean = Σx / inner). Only output 0 (Y) is made.
    """
    x = activation_input(ctx, inputs)
    eps = F32(ctx.attr("epsilon", 1e-5))
    rows, _ = _outer_inner(ctx, x.data)
    inner = rows.shape[1]
    scale = _param_values(ctx, inputs, 1)
    bias = _param_values(ctx, inputs, 2)
    s = _as_f32(*scale) if scale is not None else np.ones(inner, F32)
    b = _as_f32(*bias) if bias is not None else np.zeros(inner, F32)
    if x.data.dtype == np.float32:
        mean = (seq_sum(rows) / F32(inner)).astype(F32)
        diff = (rows - mean[:, None]).astype(F32)
        var = (seq_sum((diff * diff).astype(F32)) / F32(inner)).astype(F32)
        inv = (F32(1) / sqrt_newton(var + eps)).astype(F32)
        y = (diff * inv[:, None]).astype(F32) * s + b
        return [QTensor(y.astype(F32).reshape(x.shape), 0)]
    in_scale = scale_f32(x.exponent)
    total = rows.astype(np.int64).sum(axis=1)
    mean = (total.astype(np.float64) * 1.0 / inner).astype(F32)
    diff = (rows.astype(F32) - mean[:, None]).astype(F32)
    var = seq_sum((diff * diff).astype(F32))
    mean = (mean * in_scale).astype(F32)
    var = ((var * (in_scale * in_scale)).astype(F32) / F32(inner)).astype(F32)
    inv = (F32(1) / sqrt_newton((var + eps).astype(F32))).astype(F32)
    xv = (rows.astype(F32) * in_scale).astype(F32)
    normalized = ((xv - mean[:, None]).astype(F32) * inv[:, None]).astype(F32)
    result = ((normalized * s).astype(F32) + b).astype(F32)
    y = round_f32(result * scale_f32(-out_exponent(ctx)), ctx.rounding)
    return [QTensor(saturate(y, out_dtype(ctx, x)).reshape(x.shape), out_exponent(ctx))]


def _lp_inv_norm(vals: np.ndarray, p: int) -> np.ndarray:
    """``compute_(quant_)inv_norm`` along the last axis: 1/Σ|x| (p = 1) or fast_inv_sqrt(Σx²) (p = 2);
    0 when the norm is 0. Integer inputs sum |x| in float32 and x² in int32/int64."""
    if p == 1:
        total = seq_sum(np.abs(vals.astype(F32)))
        with np.errstate(all="ignore"):
            inv = (F32(1) / total).astype(F32)
    else:
        if np.issubdtype(vals.dtype, np.integer):
            wide = vals.astype(np.int64)
            total = (wide * wide).sum(axis=-1).astype(F32)
        else:
            total = seq_sum((vals * vals).astype(F32))
        inv = inv_sqrt(total)
    return np.where(total > 0, inv, F32(0)).astype(F32)


@register_int("LpNormalization")
def lp_norm(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """LpNormalization along ``axis`` (p = 1 or 2). Quantized: the input scale cancels, so
    ``y = round(float(x) · inv_norm(x_int) · 2^−e_out)`` (0 where the norm is 0)."""
    x = activation_input(ctx, inputs)
    p = int(ctx.attr("p", 2))
    axis = int(ctx.attr("axis", -1))
    axis = axis + x.data.ndim if axis < 0 else axis
    v = np.moveaxis(x.data, axis, -1)
    inv = _lp_inv_norm(v, p)[..., None]
    if x.data.dtype == np.float32:
        out = (v * inv).astype(F32)
        return [QTensor(np.ascontiguousarray(np.moveaxis(out, -1, axis)), 0)]
    inv = (inv * scale_f32(-out_exponent(ctx))).astype(F32)
    y = saturate(round_f32((v.astype(F32) * inv).astype(F32), ctx.rounding), out_dtype(ctx, x))
    return [QTensor(np.ascontiguousarray(np.moveaxis(y, -1, axis)), out_exponent(ctx))]


@register_int("RMSNormalization")
def rms_norm(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """RMSNormalization (the scale input is float32, esp_ppq_facts.md §2.3)::

        mean_sq = float(Σx²) · 2^(2·e_in) / inner
        rms     = fast_inv_sqrt(mean_sq + epsilon) · (2^e_in · 2^−e_out)
        y       = round(float(x) · (rms · scale[j]))

    (``dl_base_norm.cpp``: with ``-ffast-math`` the loop ``x * rms * scale[j]`` is evaluated as
    ``x * (rms * scale[j])``.) float32 nodes: ``x · rms · scale`` with a float32 sum of squares.
    """
    x = activation_input(ctx, inputs)
    eps = F32(ctx.attr("epsilon", 1e-5))
    rows, _ = _outer_inner(ctx, x.data)
    inner = rows.shape[1]
    scale = _param_values(ctx, inputs, 1)
    if scale is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (RMSNormalization): the scale input 1 is missing")
    s = _as_f32(*scale)
    if x.data.dtype == np.float32:
        mean_sq = (seq_sum((rows * rows).astype(F32)) / F32(inner)).astype(F32)
        rms = inv_sqrt(mean_sq + eps)
        y = ((rows * rms[:, None]).astype(F32) * s).astype(F32)
        return [QTensor(y.reshape(x.shape), 0)]
    in_scale = scale_f32(x.exponent)
    wide = rows.astype(np.int64)
    sum_sq = (wide * wide).sum(axis=1).astype(F32)
    mean_sq = ((sum_sq * (in_scale * in_scale)).astype(F32) / F32(inner)).astype(F32)
    rms = inv_sqrt((mean_sq + eps).astype(F32))
    rms = (rms * (in_scale * scale_f32(-out_exponent(ctx)))).astype(F32)
    factor = (rms[:, None] * s).astype(F32)
    y = saturate(round_f32((rows.astype(F32) * factor).astype(F32), ctx.rounding), out_dtype(ctx, x))
    return [QTensor(y.reshape(x.shape), out_exponent(ctx))]
