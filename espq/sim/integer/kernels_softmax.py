"""Softmax and LogSoftmax kernels of the integer runner; the output is always float32.

esp_dl_facts.md §4.8 and ``dl_module_softmax.hpp`` / ``dl_module_log_softmax.hpp``:

* int8: a 256-entry float table ``expf(2^e_in · (k − 128))`` is built once; per slice along ``axis``
  the table values are summed in float32 (sequentially) with **no max subtraction**. Softmax writes
  ``table[x] / sum``; LogSoftmax writes ``2^e_in · x − logf(sum)``.
* int16: dequantise (``2^e_in · x`` in float32), then the float path.
* float32: ``max`` along the axis, ``expf(x − max)``, a sequential float32 sum, then ``e / sum``
  (Softmax) or ``(x − max) − logf(sum)`` (LogSoftmax).

The axis attribute is used as stored (the exporter already remapped it to the exported layout, §2.5).
"""

from __future__ import annotations

import numpy as np

from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import activation_input, scale_f32

F32 = np.float32


def seq_sum(v: np.ndarray) -> np.ndarray:
    """Sequential float32 sum over the last axis (the C loop order, not numpy's pairwise sum)."""
    acc = np.zeros(v.shape[:-1], dtype=F32)
    for i in range(v.shape[-1]):
        acc = acc + v[..., i]
    return acc


def _axis(ctx: IntContext, ndim: int) -> int:
    axis = int(ctx.attr("axis", -1))
    return axis + ndim if axis < 0 else axis


def _exp_table(exponent: int) -> np.ndarray:
    """``tool::gen_lut_8bit``: ``expf(scale * (i - 128))`` for i = 0..255, float32 (inf on overflow)."""
    with np.errstate(over="ignore"):
        return np.exp(scale_f32(exponent) * np.arange(-128, 128, dtype=F32)).astype(F32)


def _float_input(x: QTensor) -> np.ndarray:
    if x.data.dtype == np.float32:
        return x.data
    return (scale_f32(x.exponent) * x.data.astype(F32)).astype(F32)


@register_int("Softmax")
def softmax(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Softmax (§4.8); float32 output."""
    x = activation_input(ctx, inputs)
    axis = _axis(ctx, x.data.ndim)
    if x.data.dtype == np.int8:
        e = np.moveaxis(_exp_table(x.exponent)[x.data.astype(np.int64) + 128], axis, -1)
    else:
        v = np.moveaxis(_float_input(x), axis, -1)
        with np.errstate(all="ignore"):
            e = np.exp(v - v.max(axis=-1, keepdims=True)).astype(F32)
    with np.errstate(all="ignore"):
        out = (e / seq_sum(e)[..., None]).astype(F32)
    return [QTensor(np.ascontiguousarray(np.moveaxis(out, -1, axis)), 0)]


@register_int("LogSoftmax")
def log_softmax(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """LogSoftmax (§4.8); float32 output."""
    x = activation_input(ctx, inputs)
    axis = _axis(ctx, x.data.ndim)
    with np.errstate(all="ignore"):
        if x.data.dtype == np.int8:
            xi = np.moveaxis(x.data.astype(np.int64), axis, -1)
            log_sum = np.log(seq_sum(_exp_table(x.exponent)[xi + 128])).astype(F32)
            out = scale_f32(x.exponent) * xi.astype(F32) - log_sum[..., None]
        else:
            v = np.moveaxis(_float_input(x), axis, -1)
            shifted = (v - v.max(axis=-1, keepdims=True)).astype(F32)
            log_sum = np.log(seq_sum(np.exp(shifted).astype(F32))).astype(F32)
            out = shifted - log_sum[..., None]
    return [QTensor(np.ascontiguousarray(np.moveaxis(out.astype(F32), -1, axis)), 0)]
