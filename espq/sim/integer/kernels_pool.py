"""AveragePool, GlobalAveragePool and MaxPool on NHWC / NWC tensors (esp_dl_facts.md §4.7).

* Average: ``CONFIG_ACCURATE_INFER`` forces the C code on every target: int32 sum of the valid window
  values, ``scale = f32(2^e_in) · f32(1/area) · f32(2^-e_out)`` (left to right in float32),
  ``y = saturate(round_target(f32(sum) · scale))``; ``area = kH·kW`` always (padding counted,
  ``count_include_pad`` ignored).
* Max: maximum of the valid (unpadded) window of raw integers; no rescale.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError
from espq.ir.limits import check_shape
from espq.sim.integer.base import IntContext, QTensor, register_int, saturate
from espq.targets.rounding import round_by_mode


def _geometry(ctx: IntContext, x: np.ndarray) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """x as [B, H, W, C] plus kernel, strides and ONNX pads [t, l, b, r] in 2-D form."""
    nsp = x.ndim - 2
    if nsp not in (1, 2):
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): expected a 3-D/4-D input, got {x.shape}"
        )
    k = [int(v) for v in ctx.attr("kernel_shape")]
    s = [int(v) for v in ctx.attr("strides", [1] * nsp)]
    p = [int(v) for v in ctx.attr("pads", [0] * 2 * nsp)]
    padded = [d + p[i] + p[i + nsp] for i, d in enumerate(x.shape[1:-1])] if len(p) == 2 * nsp else []
    check_shape(
        f"node '{ctx.node.name}' ({ctx.node.op_type}) padded input", [x.shape[0], *padded, x.shape[-1]]
    )
    if nsp == 1:
        return x[:, None], [1] + k, [1] + s, [0, p[0], 0, p[1]]
    return x, k, s, p


def _windows(xp: np.ndarray, k: list[int], s: list[int]) -> np.ndarray:
    """[B, Ho, Wo, C, kH, kW] view of the padded input."""
    v = np.lib.stride_tricks.sliding_window_view(xp, (k[0], k[1]), axis=(1, 2))
    return v[:, :: s[0], :: s[1]]


def _avg_float32(total: np.ndarray, area: int, e_in: int, e_out: int) -> np.ndarray:
    scale = np.float32(np.float32(2.0**e_in) * np.float32(1.0 / area)) * np.float32(2.0**-e_out)
    return total.astype(np.float32) * np.float32(scale)


@register_int("AveragePool")
def average_pool(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = inputs[0]
    one_d = x.data.ndim == 3
    xd, k, s, p = _geometry(ctx, x.data)
    area = k[0] * k[1]
    is_int = np.issubdtype(xd.dtype, np.integer)
    xp = np.pad(xd.astype(np.int64 if is_int else np.float32), ((0, 0), (p[0], p[2]), (p[1], p[3]), (0, 0)))
    total = _windows(xp, k, s).sum(axis=(-2, -1))
    if is_int:
        scaled = _avg_float32(total, area, x.exponent, ctx.out_exponents[0])
        y = saturate(round_by_mode(scaled.astype(np.float64), ctx.rounding), xd.dtype)
    else:
        y = (total / np.float32(area)).astype(np.float32)
    return [QTensor(y[:, 0] if one_d else y, ctx.out_exponents[0])]


@register_int("GlobalAveragePool")
def global_average_pool(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = inputs[0]
    axes = tuple(range(1, x.data.ndim - 1))
    area = int(np.prod([x.data.shape[a] for a in axes]))
    if np.issubdtype(x.data.dtype, np.integer):
        total = x.data.astype(np.int64).sum(axis=axes, keepdims=True)
        scaled = _avg_float32(total, area, x.exponent, ctx.out_exponents[0])
        y = saturate(round_by_mode(scaled.astype(np.float64), ctx.rounding), x.data.dtype)
    else:
        y = (x.data.sum(axis=axes, keepdims=True, dtype=np.float32) / np.float32(area)).astype(np.float32)
    return [QTensor(y, ctx.out_exponents[0])]


@register_int("MaxPool")
def max_pool(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = inputs[0]
    one_d = x.data.ndim == 3
    xd, k, s, p = _geometry(ctx, x.data)
    if np.issubdtype(xd.dtype, np.integer):
        low = np.iinfo(xd.dtype).min
    else:
        low = -np.inf
    xp = np.pad(xd, ((0, 0), (p[0], p[2]), (p[1], p[3]), (0, 0)), constant_values=low)
    y = np.ascontiguousarray(_windows(xp, k, s).max(axis=(-2, -1)))
    return [QTensor(y[:, 0] if one_d else y, x.exponent)]
