"""ScatterND kernel of the integer runner (``dl_module_scatter_nd.hpp``, esp_dl_facts.md §3.2).

The output starts as a copy of ``data``; for each index tuple (last axis of the INT64 ``indices``) the
matching slice is overwritten (``reduction`` "none") or combined element by element with the update
slice, in index order:

* int8/int16: ``add`` and ``mul`` work on the **raw integers** (no exponent handling, so ``mul`` does
  not rescale) and saturate to the type; ``max`` / ``min`` compare raw integers.
* float32: plain float ``+``, ``·``, max, min.

``data`` and ``updates`` are expected to share the output exponent (the exporter inserts a
RequantizeLinear otherwise).
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import out_exponent, saturate
from espq.sim.integer.kernels_compare import operand

_REDUCTIONS = ("none", "add", "mul", "max", "min")


def _combine(reduction: str, cur: np.ndarray, upd: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if reduction == "max":
        return np.maximum(cur, upd)
    if reduction == "min":
        return np.minimum(cur, upd)
    if dtype == np.float32:
        return (cur + upd) if reduction == "add" else (cur * upd)
    wide = cur.astype(np.int64), upd.astype(np.int64)
    return saturate(wide[0] + wide[1] if reduction == "add" else wide[0] * wide[1], dtype)


@register_int("ScatterND")
def scatter_nd(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ScatterND with reduction none/add/mul/max/min on raw values."""
    reduction = ctx.attr("reduction", "none") or "none"
    if reduction not in _REDUCTIONS:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (ScatterND): reduction '{reduction}' is not supported; use one of "
            f"{', '.join(_REDUCTIONS)}"
        )
    data = operand(ctx, inputs, 0)
    indices = operand(ctx, inputs, 1).astype(np.int64)
    updates = operand(ctx, inputs, 2)
    nd = int(indices.shape[-1])
    if nd > data.ndim:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' (ScatterND): indices address {nd} axes but data has {data.ndim}"
        )
    slice_size = int(np.prod(data.shape[nd:], dtype=np.int64))
    strides = np.array([int(np.prod(data.shape[i + 1 :], dtype=np.int64)) for i in range(nd)], np.int64)
    out = np.array(data, copy=True).reshape(-1)
    upd = np.asarray(updates).reshape(-1)
    for k, idx in enumerate(indices.reshape(-1, nd)):
        flat = int((idx * strides).sum())
        src = upd[k * slice_size : (k + 1) * slice_size].astype(out.dtype)
        dst = slice(flat, flat + slice_size)
        out[dst] = src if reduction == "none" else _combine(reduction, out[dst], src, out.dtype)
    exponent = out_exponent(ctx) if np.issubdtype(out.dtype, np.integer) else 0
    return [QTensor(out.reshape(data.shape), exponent)]
