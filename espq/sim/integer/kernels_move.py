"""Data-movement ops: raw integers are copied, the exponent is the output ValueInfo's (esp_dl_facts.md §4.10).

Index-like parameters (Reshape shape, Slice starts/ends/axes/steps, Pad pads, Squeeze/Unsqueeze axes,
Split sizes, Gather indices, ReverseSequence lengths) are INT64 initializers (§2.4) in the op's own
(original ONNX) axis order: ESP-PPQ makes these ops see the original layout (esp_ppq_facts.md §4).
DepthToSpace, SpaceToDepth and InsertZeros work on NHWC / NWC tensors (§2.5).
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.ir.limits import check_shape
from espq.sim.integer.base import IntContext, QTensor, register_int


def _x(ctx: IntContext, inputs: list[QTensor | None], i: int = 0) -> QTensor:
    if i >= len(inputs) or inputs[i] is None:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): input {i} must be an activation, "
            "not an initializer"
        )
    return inputs[i]  # type: ignore[return-value]


def _ints(ctx: IntContext, idx: int, attr: str | None = None) -> list[int] | None:
    """An INT64 parameter input (or, for older opsets, the attribute ``attr``)."""
    t = ctx.params.get(idx)
    if t is not None:
        return [int(v) for v in t.values()]
    if attr is not None and ctx.attr(attr) is not None:
        v = ctx.attr(attr)
        return [int(a) for a in (v if isinstance(v, list) else [v])]
    return None


def _out(ctx: IntContext, data: np.ndarray, x: QTensor) -> list[QTensor]:
    return [QTensor(data, x.exponent)]


@register_int("Identity")
def identity(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    return _out(ctx, x.data, x)


@register_int("Reshape")
def reshape(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ONNX Reshape: 0 copies the input dim (unless ``allowzero``), -1 is inferred."""
    x = _x(ctx, inputs)
    shape = _ints(ctx, 1, "shape")
    if shape is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Reshape): the shape must be an INT64 initializer")
    if not int(ctx.attr("allowzero", 0)):
        shape = [x.shape[i] if d == 0 and i < len(x.shape) else d for i, d in enumerate(shape)]
    return _out(ctx, x.data.reshape(shape), x)


@register_int("Flatten")
def flatten(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    axis = int(ctx.attr("axis", 1))
    axis = axis + x.data.ndim if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return _out(ctx, x.data.reshape(lead, -1), x)


@register_int("Transpose")
def transpose(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    perm = ctx.attr("perm")
    perm = list(reversed(range(x.data.ndim))) if perm is None else [int(p) % x.data.ndim for p in perm]
    return _out(ctx, np.ascontiguousarray(np.transpose(x.data, perm)), x)


@register_int("Squeeze")
def squeeze(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    axes = _ints(ctx, 1, "axes")
    if axes is None:
        return _out(ctx, np.squeeze(x.data), x)
    return _out(ctx, np.squeeze(x.data, axis=tuple(a % x.data.ndim for a in axes)), x)


@register_int("Unsqueeze")
def unsqueeze(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    axes = _ints(ctx, 1, "axes")
    if axes is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Unsqueeze): axes are required")
    rank = x.data.ndim + len(axes)
    return _out(ctx, np.expand_dims(x.data, tuple(sorted(a % rank for a in axes))), x)


def _slice_indices(start: int, end: int, step: int, dim: int) -> np.ndarray:
    """ONNX Slice index list for one axis (negative values count from the end, then clamp)."""
    if step == 0:
        raise EspdlFormatError("Slice step 0 is invalid")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return np.arange(start, end, step)


@register_int("Slice")
def slice_(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    starts, ends = _ints(ctx, 1, "starts"), _ints(ctx, 2, "ends")
    if starts is None or ends is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Slice): starts/ends must be INT64 initializers")
    axes = _ints(ctx, 3, "axes") or list(range(len(starts)))
    steps = _ints(ctx, 4) or [1] * len(starts)
    data = x.data
    for s, e, a, st in zip(starts, ends, axes, steps):
        a %= data.ndim
        data = np.take(data, _slice_indices(s, e, st, data.shape[a]), axis=a)
    return _out(ctx, np.ascontiguousarray(data), x)


@register_int("Pad")
def pad(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """constant (value in the tensor's integer domain), edge or reflect padding; negative pads crop."""
    x = _x(ctx, inputs)
    pads = _ints(ctx, 1, "pads")
    if pads is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Pad): pads must be an INT64 initializer")
    n = x.data.ndim
    axes = _ints(ctx, 3) or list(range(n))
    full = [[0, 0] for _ in range(n)]
    for k, a in enumerate(axes):
        full[a % n] = [pads[k], pads[k + len(axes)]]
    mode = ctx.attr("mode", "constant")
    if isinstance(mode, bytes):
        mode = mode.decode()
    data = x.data
    crop = tuple(slice(max(-b, 0), data.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(full))
    data = data[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in full]
    check_shape(f"node '{ctx.node.name}' (Pad) output", [n + b + e for n, (b, e) in zip(data.shape, width)])
    if mode == "constant":
        cv = ctx.params.get(2)
        value = int(cv.values()[0]) if cv is not None and cv.numel else 0
        if cv is None and len(inputs) > 2 and inputs[2] is not None:
            value = int(inputs[2].data.reshape(-1)[0])
        data = np.pad(data, width, mode="constant", constant_values=value)
    elif mode in ("edge", "reflect"):
        data = np.pad(data, width, mode=mode)
    else:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (Pad): mode '{mode}' is not supported by ESP-DL "
            "(constant, edge, reflect)"
        )
    return _out(ctx, data, x)


@register_int("Split")
def split(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    axis = int(ctx.attr("axis", 0)) % x.data.ndim
    sizes = _ints(ctx, 1, "split")
    n_out = len(ctx.node.outputs)
    dim = x.data.shape[axis]
    if sizes is None:
        chunk = -(-dim // n_out)
        sizes = [min(chunk, dim - i * chunk) for i in range(n_out)]
    bounds = np.cumsum(sizes)[:-1]
    return [QTensor(np.ascontiguousarray(p), x.exponent) for p in np.split(x.data, bounds, axis=axis)]


@register_int("Gather")
def gather(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    axis = int(ctx.attr("axis", 0)) % x.data.ndim
    t = ctx.params.get(1)
    idx = t.values().reshape(t.dims) if t is not None else _x(ctx, inputs, 1).data
    idx = np.asarray(idx, dtype=np.int64)
    idx = np.where(idx < 0, idx + x.data.shape[axis], idx)
    return _out(ctx, np.take(x.data, idx, axis=axis), x)


@register_int("Concat")
def concat(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Byte copy: no requantisation (inputs are expected to share the output exponent, §4.10)."""
    parts = []
    for i in range(len(ctx.node.inputs)):
        if i in ctx.params:
            p = ctx.params[i]
            parts.append(p.values().reshape(p.dims))
        elif inputs[i] is not None:
            parts.append(inputs[i].data)
    axis = int(ctx.attr("axis", 0)) % parts[0].ndim
    first = next(q for q in inputs if q is not None)
    return [QTensor(np.concatenate(parts, axis=axis).astype(first.data.dtype), first.exponent)]


def _nchw(x: np.ndarray) -> np.ndarray:
    return np.transpose(x, (0, 3, 1, 2))


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


@register_int("SpaceToDepth")
def space_to_depth(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """SpaceToDepth on an NHWC tensor, output channel ``c·b² + bh·b + bw``.

    This is the order of the op-test outputs (all targets), i.e. ONNX's DepthToSpace CRD order, not
    ONNX SpaceToDepth's ``(bh·b + bw)·C + c``.
    """
    x = _x(ctx, inputs)
    b = int(ctx.attr("blocksize"))
    n, c, h, w = _nchw(x.data).shape
    t = _nchw(x.data).reshape(n, c, h // b, b, w // b, b).transpose(0, 1, 3, 5, 2, 4)
    return _out(ctx, _nhwc(t.reshape(n, c * b * b, h // b, w // b)), x)


@register_int("DepthToSpace")
def depth_to_space(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ONNX DepthToSpace (DCR or CRD) on an NHWC tensor."""
    x = _x(ctx, inputs)
    b = int(ctx.attr("blocksize"))
    mode = ctx.attr("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    n, c, h, w = _nchw(x.data).shape
    xc = _nchw(x.data)
    if mode == "DCR":
        t = xc.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = xc.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return _out(ctx, _nhwc(t.reshape(n, c // (b * b), h * b, w * b)), x)


@register_int("ReverseSequence")
def reverse_sequence(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = _x(ctx, inputs)
    batch_axis = int(ctx.attr("batch_axis", 1))
    time_axis = int(ctx.attr("time_axis", 0))
    lens = _ints(ctx, 1)
    if lens is None:
        lens = [int(v) for v in _x(ctx, inputs, 1).data.reshape(-1)]
    out = x.data.copy()
    for bi, length in enumerate(lens):
        src = [slice(None)] * x.data.ndim
        src[batch_axis] = bi
        src[time_axis] = slice(0, length)
        dst = list(src)
        dst[time_axis] = slice(length - 1, None, -1) if length > 0 else slice(0, 0)
        out[tuple(src)] = x.data[tuple(dst)]
    return _out(ctx, out, x)


@register_int("InsertZeros")
def insert_zeros(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ConvTranspose lowering: stride−1 zeros between pixels, output_padding zeros at the end (NHWC/NWC)."""
    x = _x(ctx, inputs)
    spatial = x.data.ndim - 2
    stride = [int(s) for s in ctx.attr("stride", [1] * spatial)]
    extra = [int(p) for p in ctx.attr("output_padding", [0] * spatial)]
    size = [(x.data.shape[1 + i] - 1) * stride[i] + 1 + extra[i] for i in range(spatial)]
    out = np.zeros((x.data.shape[0], *size, x.data.shape[-1]), dtype=x.data.dtype)
    idx = (slice(None),) + tuple(
        slice(0, (x.data.shape[1 + i] - 1) * stride[i] + 1, stride[i]) for i in range(spatial)
    )
    out[idx] = x.data
    return _out(ctx, out, x)


@register_int("StreamingCache")
def streaming_cache(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Prepend the last ``window_size − 1`` frames of earlier runs (zeros at first) along ``frame_axis``."""
    x = _x(ctx, inputs)
    axis = int(ctx.attr("frame_axis", 1)) % x.data.ndim
    keep = int(ctx.attr("window_size", 1)) - 1
    cache = ctx.state.get("cache")
    if cache is None:
        shape = list(x.data.shape)
        shape[axis] = keep
        cache = np.zeros(shape, dtype=x.data.dtype)
    out = np.concatenate([cache, x.data], axis=axis)
    ctx.state["cache"] = np.take(out, np.arange(out.shape[axis] - keep, out.shape[axis]), axis=axis)
    return _out(ctx, out, x)
