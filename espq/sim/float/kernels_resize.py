"""Resize and Upsample (ONNX semantics: nearest/linear/cubic, every coordinate_transformation_mode).

The resize is separable: each resized axis is interpolated in turn with the 1-D taps and weights
of its output coordinates. Coordinates are computed in float32 like onnxruntime, so ties in nearest
mode resolve the same way.
"""

from __future__ import annotations

import math

import torch

from espq.errors import UnsupportedOpError
from espq.ir.graph import Node
from espq.sim.float.registry import axis_of, current_opset, register

Tensor = torch.Tensor


def _original_coords(
    mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float] | None
) -> Tensor:
    """Source coordinate (float32) of every output index along one axis."""
    x = torch.arange(out_len, dtype=torch.float32)
    sc = torch.tensor(scale, dtype=torch.float32)
    if mode == "half_pixel":
        return (x + 0.5) / sc - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        offset = (in_len / 2.0) * (1 - adjustment)
        return offset + (x + 0.5) / sc - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / sc - 0.5 if out_len > 1 else torch.zeros_like(x)
    if mode == "align_corners":
        return x * (in_len - 1) / (out_len - 1) if out_len > 1 else torch.zeros_like(x)
    if mode == "asymmetric":
        return x / sc
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / sc
    if mode == "tf_crop_and_resize":
        start, end = roi if roi is not None else (0.0, 1.0)
        if out_len > 1:
            return start * (in_len - 1) + x * (end - start) * (in_len - 1) / (out_len - 1)
        return torch.full_like(x, 0.5 * (start + end) * (in_len - 1))
    raise UnsupportedOpError(f"Resize coordinate_transformation_mode '{mode}' is unknown")


def _nearest_index(x: Tensor, mode: str, downsampling: bool) -> Tensor:
    if mode == "round_prefer_floor":
        return torch.ceil(x - 0.5)
    if mode == "round_prefer_ceil":
        return torch.floor(x + 0.5)
    if mode == "floor":
        return torch.floor(x)
    if mode == "ceil":
        return torch.ceil(x)
    if mode == "simple":  # opset < 11 Resize and Upsample (onnxruntime)
        return torch.ceil(x) if downsampling else torch.trunc(x)
    raise UnsupportedOpError(f"Resize nearest_mode '{mode}' is unknown")


def _cubic_weights(s: Tensor, a: float) -> list[Tensor]:
    def w(t: Tensor) -> Tensor:
        t = t.abs()
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))

    return [w(s + 1), w(s), w(1 - s), w(2 - s)]


def _resize_axis(
    x: Tensor, axis: int, out_len: int, scale: float, node: Node, cfg: dict, roi: tuple[float, float] | None
) -> tuple[Tensor, Tensor | None]:
    """Resize ``x`` along ``axis``; returns the result and an out-of-range mask (crop-and-resize)."""
    in_len = x.shape[axis]
    coords = _original_coords(cfg["coord"], out_len, in_len, scale, roi)
    outside = None
    if cfg["coord"] == "tf_crop_and_resize":
        outside = (coords < 0) | (coords > in_len - 1)
    mode = cfg["mode"]
    dev = x.device

    def take(idx: Tensor) -> Tensor:
        return x.index_select(axis, idx.clamp(0, in_len - 1).to(torch.long).to(dev))

    def along(w: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[axis] = out_len
        return w.to(dev, x.dtype).reshape(shape)

    if mode == "nearest":
        idx = _nearest_index(coords, cfg["nearest"], scale < 1)
        return take(idx), outside
    if mode == "linear":
        c = coords.clamp(0, in_len - 1)
        i0 = torch.floor(c)
        frac = c - i0
        y = take(i0) * along(1 - frac) + take(i0 + 1) * along(frac)
        return y, outside
    if mode == "cubic":
        i0 = torch.floor(coords)
        weights = _cubic_weights(coords - i0, cfg["cubic_a"])
        taps = [i0 - 1, i0, i0 + 1, i0 + 2]
        if cfg["exclude_outside"]:
            weights = [
                torch.where((t < 0) | (t > in_len - 1), torch.zeros_like(w), w) for w, t in zip(weights, taps)
            ]
            total = sum(weights)
            weights = [w / total for w in weights]
        y = sum(take(t) * along(w) for t, w in zip(taps, weights))
        return y, outside
    raise UnsupportedOpError(f"Resize mode '{mode}' is not supported (nearest, linear, cubic)")


def _resize(
    node: Node, x: Tensor, scales: list[float] | None, sizes: list[int] | None, roi, cfg: dict
) -> Tensor:
    rank = x.dim()
    axes = [axis_of(a, rank) for a in (node.attr("axes") or range(rank))]
    in_shape = [x.shape[a] for a in axes]
    if sizes:
        policy = node.attr("keep_aspect_ratio_policy", "stretch")
        if policy == "stretch":
            sc = [s / i for s, i in zip(sizes, in_shape)]
            out = list(sizes)
        else:
            ratios = [s / i for s, i in zip(sizes, in_shape)]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            sc = [r] * len(axes)
            out = [int(math.floor(r * i + 0.5)) for i in in_shape]
    else:
        sc = [float(s) for s in scales]
        out = [int(math.floor(i * s)) for i, s in zip(in_shape, sc)]
    if int(node.attr("antialias", 0)) and any(s < 1 for s in sc):
        raise UnsupportedOpError(f"Resize node '{node.name}': antialias downsampling is not supported")
    full_roi = None
    if roi is not None and roi.numel() == 2 * rank:
        full_roi = roi.reshape(-1).tolist()
    elif roi is not None and roi.numel() == 2 * len(axes):
        vals = roi.reshape(-1).tolist()
        full_roi = [0.0] * rank + [1.0] * rank
        for j, a in enumerate(axes):
            full_roi[a], full_roi[rank + a] = vals[j], vals[len(axes) + j]
    masks = []
    for a, o, s in zip(axes, out, sc):
        if o == x.shape[a] and s == 1.0 and cfg["coord"] != "tf_crop_and_resize":
            continue
        r = (full_roi[a], full_roi[rank + a]) if full_roi else None
        x, m = _resize_axis(x, a, o, s, node, cfg, r)
        if m is not None:
            shape = [1] * rank
            shape[a] = o
            masks.append(m.to(x.device).reshape(shape))
    if masks:
        any_out = masks[0]
        for m in masks[1:]:
            any_out = any_out | m
        x = x.masked_fill(any_out, float(node.attr("extrapolation_value", 0.0)))
    return x


def _non_empty(t: Tensor | None) -> Tensor | None:
    return t if t is not None and t.numel() > 0 else None


@register("Resize")
def _resize_kernel(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Resize: opset 10 (X, scales) and opset 11+ (X, roi, scales, sizes)."""
    x = inputs[0]
    old = current_opset() < 11
    mode = node.attr("mode", "nearest")
    cfg = {
        "mode": "linear" if mode in ("bilinear", "trilinear") else mode,
        "coord": "asymmetric" if old else node.attr("coordinate_transformation_mode", "half_pixel"),
        "nearest": "simple" if old else node.attr("nearest_mode", "round_prefer_floor"),
        "cubic_a": float(node.attr("cubic_coeff_a", -0.75)),
        "exclude_outside": int(node.attr("exclude_outside", 0)),
    }
    if old:
        scales, sizes, roi = inputs[1], None, None
    else:
        roi = _non_empty(inputs[1] if len(inputs) > 1 else None)
        scales = _non_empty(inputs[2] if len(inputs) > 2 else None)
        sizes = _non_empty(inputs[3] if len(inputs) > 3 else None)
    y = _resize(
        node,
        x,
        None if scales is None else [float(v) for v in scales.reshape(-1).tolist()],
        None if sizes is None else [int(v) for v in sizes.reshape(-1).tolist()],
        roi,
        cfg,
    )
    return [y]


@register("Upsample")
def _upsample(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Upsample (deprecated): scales as attribute (opset 7) or input 1 (opset 9), asymmetric."""
    x = inputs[0]
    scales = node.attr("scales")
    if scales is None:
        scales = [float(v) for v in inputs[1].reshape(-1).tolist()]
    mode = node.attr("mode", "nearest")
    cfg = {
        "mode": "linear" if mode in ("bilinear", "linear") else mode,
        "coord": "asymmetric",
        "nearest": "simple",
        "cubic_a": -0.75,
        "exclude_outside": 0,
    }
    proxy = Node(node.name, node.op_type, node.inputs, node.outputs, {}, node.domain)
    return [_resize(proxy, x, list(scales), None, None, cfg)]
