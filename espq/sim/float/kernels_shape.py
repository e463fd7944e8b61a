"""Shape and data-movement kernels: Reshape, Flatten, Squeeze, Slice, Pad, Concat, Split, ...

Graphs carry batch-1 static shapes, but calibration runs batches > 1. Constant target shapes whose
leading 1 was the batch are widened to the run-time batch (see :func:`_batch_fixed_shape`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from espq.errors import ShapeError
from espq.ir.graph import Node
from espq.sim.float.registry import attr_or_input, axis_of, ints, need, register, scalar, static_shape

Tensor = torch.Tensor


def _batch_grew(node: Node, x: Tensor) -> bool:
    """True when input 0 has the graph's static shape except a leading 1 that is now > 1."""
    static = static_shape(node.inputs[0])
    return (
        static is not None
        and len(static) == x.dim()
        and x.dim() > 0
        and static[0] == 1
        and x.shape[0] != 1
        and tuple(static[1:]) == tuple(x.shape[1:])
    )


def _batch_fixed_shape(node: Node, x: Tensor, shape: list[int]) -> list[int]:
    """Resolve a Reshape target (0 = copy unless allowzero, -1 = infer) for input ``x``.

    A leading 1 in the target is replaced by the input batch N when the input is the graph's
    batch-1 tensor with a grown batch, or when the element count would not match otherwise.
    """
    allowzero = int(node.attr("allowzero", 0))
    out = [x.shape[i] if (d == 0 and not allowzero and i < x.dim()) else d for i, d in enumerate(shape)]
    n = x.shape[0] if x.dim() else 1
    if out and out[0] == 1 and n != 1:
        known = math.prod(d for d in out if d != -1)
        mismatch = -1 not in out and known != x.numel()
        if _batch_grew(node, x) or mismatch:
            out[0] = n
    return out


@register("Reshape")
def _reshape(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    shape = node.attr("shape") if len(inputs) < 2 or inputs[1] is None else ints(inputs[1])
    return [x.reshape(_batch_fixed_shape(node, x, list(shape)))]


@register("Flatten")
def _flatten(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axis = axis_of(int(node.attr("axis", 1)), x.dim())
    return [x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))]


@register("Squeeze")
def _squeeze(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axes = attr_or_input(node, inputs, "axes", 1)
    if axes is None:
        static = static_shape(node.inputs[0])
        ref = static if static is not None and len(static) == x.dim() else tuple(x.shape)
        axes = [i for i, d in enumerate(ref) if d == 1 and x.shape[i] == 1]
    axes = sorted({axis_of(a, x.dim()) for a in axes}, reverse=True)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"Squeeze axis {a} has size {x.shape[a]}, not 1")
        x = x.squeeze(a)
    return [x]


@register("Unsqueeze")
def _unsqueeze(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axes = attr_or_input(node, inputs, "axes", 1, [])
    rank = x.dim() + len(axes)
    for a in sorted(axis_of(a, rank) for a in axes):
        x = x.unsqueeze(a)
    return [x]


@register("Transpose")
def _transpose(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    perm = node.attr("perm") or list(range(x.dim()))[::-1]
    return [x.permute(tuple(perm))]


@register("Concat")
def _concat(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    xs = [x for x in inputs if x is not None]
    rank = xs[0].dim()
    axis = axis_of(int(node.attr("axis", 1)), rank)
    if axis != 0 and rank > 0:
        # batch-1 constants (class tokens, anchors) concatenated with batch-N activations
        n = max(x.shape[0] for x in xs)
        xs = [x.expand(n, *x.shape[1:]) if x.shape[0] == 1 and n != 1 else x for x in xs]
    if any(x.dtype != xs[0].dtype for x in xs):
        xs = [x.to(xs[0].dtype) for x in xs]
    return [torch.cat(xs, dim=axis)]


@register("Split")
def _split(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axis = axis_of(int(node.attr("axis", 0)), x.dim())
    sizes = attr_or_input(node, inputs, "split", 1)
    dim = x.shape[axis]
    if not sizes:
        n = int(node.attr("num_outputs", len(node.outputs)))
        if node.attr("num_outputs") is not None:
            chunk = -(-dim // n)
            sizes = [min(chunk, dim - i * chunk) for i in range(n)]
        else:
            sizes = [dim // n] * n
    return list(torch.split(x, list(sizes), dim=axis))


def _slice_indices(start: int, end: int, step: int, dim: int) -> range:
    """ONNX Slice clamping rules for one axis."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    return range(start, end, step)


@register("Slice")
def _slice(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Slice: starts/ends/axes as attributes (opset < 10) or inputs 1-4 (opset >= 10)."""
    need(inputs, 1, node)
    x = inputs[0]
    if "starts" in node.attrs:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes"), None
    else:
        need(inputs, 3, node)
        starts, ends = ints(inputs[1]), ints(inputs[2])
        axes = ints(inputs[3]) if len(inputs) > 3 else None
        steps = ints(inputs[4]) if len(inputs) > 4 else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = axis_of(a, x.dim())
        r = _slice_indices(s, e, st, x.shape[a])
        if st == 1:
            x = x.narrow(a, r.start, max(len(r), 0))
        else:
            x = x.index_select(a, torch.tensor(list(r), dtype=torch.long, device=x.device))
    return [x]


@register("Expand")
def _expand(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, shape = inputs[0], ints(inputs[1])
    out = torch.broadcast_shapes(tuple(x.shape), tuple(shape))
    return [x.expand(out).clone()]


@register("Tile")
def _tile(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    return [inputs[0].repeat(tuple(ints(inputs[1])))]


def _pad_index(length: int, before: int, after: int, mode: str, device: torch.device) -> Tensor:
    """Source index along one axis for edge/reflect/wrap padding."""
    idx = torch.arange(-before, length + after, device=device)
    if mode == "edge":
        return idx.clamp(0, length - 1)
    if mode == "wrap":
        return torch.remainder(idx, length)
    period = 2 * (length - 1)  # reflect (mirror without repeating the edge)
    if period == 0:
        return torch.zeros_like(idx)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= length, period - idx, idx)


@register("Pad")
def _pad(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Pad: pads/value as attributes (opset < 11) or inputs (pads, constant_value, axes)."""
    need(inputs, 1, node)
    x = inputs[0]
    mode = node.attr("mode", "constant")
    if "pads" in node.attrs:
        pads, value = list(node.attr("pads")), float(node.attr("value", 0.0))
        axes = list(range(x.dim()))
    else:
        need(inputs, 2, node)
        pads = ints(inputs[1])
        value = scalar(inputs[2] if len(inputs) > 2 else None, 0)
        axes_in = ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else None
        axes = [axis_of(a, x.dim()) for a in axes_in] if axes_in else list(range(x.dim()))
    n = len(axes)
    begin = dict(zip(axes, pads[:n]))
    end = dict(zip(axes, pads[n:]))
    # negative pads crop
    for a in axes:
        b, e = begin[a], end[a]
        if b < 0 or e < 0:
            lo, hi = max(-b, 0), x.shape[a] - max(-e, 0)
            x = x.narrow(a, lo, hi - lo)
            begin[a], end[a] = max(b, 0), max(e, 0)
    if mode == "constant":
        torch_pads: list[int] = []
        for a in reversed(range(x.dim())):
            torch_pads += [begin.get(a, 0), end.get(a, 0)]
        if x.dtype == torch.bool:
            return [F.pad(x.to(torch.uint8), torch_pads, value=int(bool(value))).to(torch.bool)]
        return [F.pad(x, torch_pads, value=value)]
    for a in axes:
        if begin[a] or end[a]:
            x = x.index_select(a, _pad_index(x.shape[a], begin[a], end[a], mode, x.device))
    return [x]


@register("DepthToSpace")
def _depth_to_space(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    b = int(node.attr("blocksize"))
    n, c, h, w = x.shape
    if node.attr("mode", "DCR") == "CRD":
        y = x.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
    else:
        y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return [y.reshape(n, c // (b * b), h * b, w * b)]


@register("SpaceToDepth")
def _space_to_depth(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    b = int(node.attr("blocksize"))
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return [y.reshape(n, c * b * b, h // b, w // b)]


@register("Shape")
def _shape(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    dims = list(inputs[0].shape)
    start, end = int(node.attr("start", 0)), node.attr("end")
    dims = dims[start:] if end is None else dims[start : int(end)]
    return [torch.tensor(dims, dtype=torch.int64, device=inputs[0].device)]


@register("Size")
def _size(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    return [torch.tensor(inputs[0].numel(), dtype=torch.int64, device=inputs[0].device)]


@register("InsertZeros")
def _insert_zeros(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """ESP-DL InsertZeros (esp_ppq_facts §3.4, ESP-DL `dl_module_insert_zeros.hpp`).

    In the IR's channel-first layout (N, C, *spatial): stride-1 zeros are inserted between
    neighbouring input samples on every spatial axis and ``output_padding`` zeros appended at the
    end, so a spatial size d becomes (d - 1) * stride + 1 + output_padding. ``stride`` and
    ``output_padding`` are per spatial axis; a single value applies to all.
    """
    need(inputs, 1, node)
    x = inputs[0]
    nsp = x.dim() - 2
    stride = list(node.attr("stride", [1]))
    opad = list(node.attr("output_padding", [0]) or [0])
    stride = stride * nsp if len(stride) == 1 else stride
    opad = opad * nsp if len(opad) == 1 else opad
    sizes = [(d - 1) * s + 1 + p for d, s, p in zip(x.shape[2:], stride, opad)]
    y = x.new_zeros((*x.shape[:2], *sizes))
    index = (slice(None), slice(None), *(slice(0, (d - 1) * s + 1, s) for d, s in zip(x.shape[2:], stride)))
    y[index] = x
    return [y]


@register("StreamingCache")
def _streaming_cache_fresh(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """StreamingCache with an empty (zero) cache; stateful runs go through FloatSession."""
    need(inputs, 1, node)
    return [StreamingState().step(node, inputs[0])]


class StreamingState:
    """History of every StreamingCache node of one session (ESP-DL `dl_module_streaming_cache.hpp`).

    Each call outputs ``concat(cache, x)`` along ``frame_axis`` (window_size - 1 cached frames,
    zeros initially) and keeps the last window_size - 1 frames of that output as the new cache.
    A cache whose shape no longer fits the input (other batch size) restarts from zeros.
    """

    def __init__(self) -> None:
        self.caches: dict[str, Tensor] = {}

    def reset(self) -> None:
        """Forget all history (ESP-DL ``Model::reset``)."""
        self.caches.clear()

    def step(self, node: Node, x: Tensor) -> Tensor:
        axis = axis_of(int(node.attr("frame_axis", 1)), x.dim())
        keep = int(node.attr("window_size", 1)) - 1
        if keep <= 0:
            return x
        cache_shape = list(x.shape)
        cache_shape[axis] = keep
        cache = self.caches.get(node.name)
        if cache is None or list(cache.shape) != cache_shape or cache.dtype != x.dtype:
            cache = x.new_zeros(cache_shape)
        y = torch.cat([cache, x], dim=axis)
        self.caches[node.name] = y.narrow(axis, y.shape[axis] - keep, keep).clone()
        return y

    def kernel(self, node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
        """A StreamingCache kernel using this state (pass as ``kernels={'StreamingCache': ...}``)."""
        need(inputs, 1, node)
        return [self.step(node, inputs[0])]
