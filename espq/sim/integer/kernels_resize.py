"""Resize kernel of the integer runner (nearest / linear on NWC or NHWC activations).

esp_dl_facts.md §4.10 and ``dl_module_resize.hpp`` / ``dl_base_resize.{hpp,cpp}``:

* Parameters: input 2 ``scales`` (FLOAT, NCW/NCHW order) or input 3 ``sizes`` (INT64). With sizes the
  output size is taken from them and the scale becomes ``out / (float)in``; with scales the output size
  is ``(int)(in · scale)``. Activations are channel-last (NWC / NHWC, §2.5).
* nearest (asymmetric, floor): ``src = min((int)(o · float32(1/scale)), in − 1)``; value
  ``round(float(x) · out_scale / 2^out_shift)`` with ``out_shift = e_out − e_in`` when positive, else
  ``out_scale = 2^(e_in − e_out)``. The C kernel stores the rounded int without saturation (an int8
  cast wraps); the PIE kernels saturate.
* linear: ``linear_coeffs`` in float32 — half_pixel ``fx = (o + 0.5)·inv − 0.5`` or align_corners
  ``fx = o·inv`` with ``scale = (out − 1)/(float)(in − 1)``; ``in_x = floor(fx)``, ``fx −= in_x``;
  ``in_x < 0`` → (0, 0); ``in_x ≥ in − 1`` → (in − 2, 1); weights (1 − fx, fx). Separable: each row
  ``deq(x0)·r0 + deq(x1)·r1`` along W, then the two rows along H, then ``quantize`` (round, saturate).
  ``a·b + c·d`` is contracted by GCC (``-ffast-math``) into ``fma(a, b, c·d)``, see :func:`_lerp`.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.ir.limits import check_shape
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import (
    activation_input,
    out_dtype,
    out_exponent,
    round_f32,
    saturate,
    scale_f32,
)

F32 = np.float32


def fma_f32(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add: ``a·b + c`` rounded once (the float32 product is exact in float64)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(F32)


def _lerp(v0: np.ndarray, r0: np.ndarray, v1: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """``v0·r0 + v1·r1`` as GCC contracts it: ``fma(v0, r0, float32(v1·r1))``."""
    return fma_f32(v0, r0, (np.asarray(v1, F32) * np.asarray(r1, F32)).astype(F32))


def _param(ctx: IntContext, i: int) -> np.ndarray | None:
    t = ctx.params.get(i)
    if t is None or t.numel == 0:
        return None
    return t.values()


def _scales_and_sizes(ctx: IntContext, in_shape: tuple[int, ...]) -> tuple[list[float], list[int]]:
    """(scales along the spatial axes, output sizes along them) for an NWC/NHWC input."""
    rank = len(in_shape)
    spatial = list(range(1, rank - 1))  # W, or H and W, in the channel-last layout
    sizes = _param(ctx, 3)
    scales = _param(ctx, 2)
    if sizes is not None:
        out = [int(sizes[2 + k]) for k in range(len(spatial))]
        sc = [float(F32(o) / F32(in_shape[a])) for o, a in zip(out, spatial)]
        return sc, out
    if scales is None:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' (Resize): neither scales (input 2) nor sizes (input 3) is an "
            "initializer; ESP-DL needs one of them as a parameter"
        )
    sc = [float(F32(scales[2 + k])) for k in range(len(spatial))]
    out = [int(F32(in_shape[a]) * F32(s)) for a, s in zip(spatial, sc)]
    return sc, out


def _nearest(ctx: IntContext, x: QTensor, scales: list[float], sizes: list[int]) -> np.ndarray:
    spatial_in = x.data.shape[1:-1]
    idx = []
    for s, n_out, n_in in zip(scales, sizes, spatial_in):
        inv = F32(1) / F32(s)
        idx.append(np.minimum((np.arange(n_out, dtype=F32) * inv).astype(np.int64), n_in - 1))
    src = x.data
    if len(idx) == 1:
        picked = src[:, idx[0], :]
    else:
        picked = src[:, idx[0][:, None], idx[1][None, :], :]
    shift = out_exponent(ctx) - x.exponent
    scale = F32(2.0 ** max(-shift, 0))
    div = F32(2.0 ** max(shift, 0))
    v = round_f32((picked.astype(F32) * scale) / div, ctx.rounding)
    dt = out_dtype(ctx, x)
    if ctx.target.narrowing_wraps:  # C kernel: int -> int8/int16 conversion wraps
        return v.astype(dt)
    return saturate(v, dt)


def _coeffs(n_out: int, n_in: int, scale: float, align_corners: bool) -> tuple[np.ndarray, ...]:
    """``linear_coeffs`` for every output coordinate: (in_x, ratio_0, ratio_1)."""
    if align_corners:
        scale = float(F32(n_out - 1) / F32(n_in - 1))
    inv = F32(1) / F32(scale)
    o = np.arange(n_out, dtype=F32)
    if align_corners:
        fx = (o * inv).astype(F32)
    else:
        fx = fma_f32(o + F32(0.5), inv, F32(-0.5))
    ix = np.floor(fx).astype(np.int64)
    fx = (fx - ix.astype(F32)).astype(F32)
    low = ix < 0
    ix = np.where(low, 0, ix)
    fx = np.where(low, F32(0), fx)
    high = ix >= n_in - 1
    ix = np.where(high, n_in - 2, ix)
    fx = np.where(high, F32(1), fx).astype(F32)
    return ix, (F32(1) - fx).astype(F32), fx


def _linear(ctx: IntContext, x: QTensor, scales: list[float], sizes: list[int]) -> np.ndarray:
    align = ctx.attr("coordinate_transformation_mode", "half_pixel") == "align_corners"
    deq = x.data.astype(F32) * scale_f32(x.exponent)  # dequantize(): float(x) * scale
    # along W (last spatial axis)
    n_in_w = x.data.shape[-2]
    ix, r0, r1 = _coeffs(sizes[-1], n_in_w, scales[-1], align)
    shp = (1,) * (deq.ndim - 2) + (-1, 1)
    rows = _lerp(deq[..., ix, :], r0.reshape(shp), deq[..., ix + 1, :], r1.reshape(shp))
    if len(sizes) == 2:  # then along H
        iy, q0, q1 = _coeffs(sizes[0], x.data.shape[1], scales[0], align)
        shp_h = (1, -1, 1, 1)
        rows = _lerp(rows[:, iy], q0.reshape(shp_h), rows[:, iy + 1], q1.reshape(shp_h))
    v = round_f32(rows * scale_f32(-out_exponent(ctx)), ctx.rounding)
    return saturate(v, out_dtype(ctx, x))


@register_int("Resize")
def resize(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Resize of an int8/int16 NWC/NHWC tensor, nearest or linear (§4.10)."""
    x = activation_input(ctx, inputs)
    if x.data.ndim not in (3, 4) or x.data.dtype == np.float32:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (Resize): ESP-DL resizes 3-D (NWC) or 4-D (NHWC) int8/int16 tensors, "
            f"got shape {list(x.shape)} {x.data.dtype}"
        )
    mode = ctx.attr("mode", "nearest")
    scales, sizes = _scales_and_sizes(ctx, x.shape)
    check_shape(f"node '{ctx.node.name}' (Resize) output", [x.shape[0], *sizes, x.shape[-1]])
    if mode == "nearest":
        out = _nearest(ctx, x, scales, sizes)
    elif mode == "linear":
        out = _linear(ctx, x, scales, sizes)
    else:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (Resize): mode '{mode}' is not implemented by ESP-DL; "
            "use nearest or linear"
        )
    return [QTensor(out, out_exponent(ctx))]
