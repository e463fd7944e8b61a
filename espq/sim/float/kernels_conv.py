"""Convolution and pooling kernels (1-D, 2-D and 3-D, ONNX padding/auto_pad/ceil_mode rules)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from espq.errors import UnsupportedOpError
from espq.ir.graph import Node
from espq.sim.float.kernels_elementwise import fused_activation
from espq.sim.float.registry import need, register

Tensor = torch.Tensor

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_MAXPOOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _spatial(node: Node, name: str, n: int, default: int) -> list[int]:
    v = node.attr(name)
    return [default] * n if not v else [int(a) for a in v]


def _same_pads(node: Node, sizes: list[int], k: list[int], s: list[int], d: list[int]) -> list[int]:
    """ONNX begin+end pads for a forward window op (explicit pads or auto_pad)."""
    n = len(sizes)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            out = -(-sizes[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - sizes[i], 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin + end
    if auto == "VALID":
        return [0] * (2 * n)
    return _spatial(node, "pads", 2 * n, 0)


def _torch_pads(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] -> F.pad order (last axis first)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


def _check_rank(node: Node, x: Tensor) -> int:
    nsp = x.dim() - 2
    if nsp not in _CONV:
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_type}) has a {x.dim()}-D input; only 1-D, 2-D and 3-D spatial "
            "inputs (rank 3 to 5) are supported"
        )
    return nsp


@register("Conv")
def _conv(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    nsp = _check_rank(node, x)
    k = list(w.shape[2:])
    s = _spatial(node, "strides", nsp, 1)
    d = _spatial(node, "dilations", nsp, 1)
    pads = _same_pads(node, list(x.shape[2:]), k, s, d)
    padding: list[int] | int = 0
    if pads[:nsp] == pads[nsp:]:
        padding = pads[:nsp]  # symmetric: torch pads inside the convolution, no copy of the input
    elif any(pads):
        x = F.pad(x, _torch_pads(pads))
    w = w.to(x.dtype)
    if nsp == 2:  # NHWC kernels are several times faster than NCHW ones (depthwise: ~10x on CPU)
        x = x.contiguous(memory_format=torch.channels_last)
        w = w.contiguous(memory_format=torch.channels_last)
    y = _CONV[nsp](x, w, None if b is None else b.to(x.dtype), s, padding, d, int(node.attr("group", 1)))
    return [fused_activation(node, y)]


@register("ConvTranspose")
def _conv_transpose(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """ConvTranspose: full transposed convolution, then output_padding and pads/output_shape crop."""
    need(inputs, 2, node)
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    nsp = _check_rank(node, x)
    k = list(w.shape[2:])
    s = _spatial(node, "strides", nsp, 1)
    d = _spatial(node, "dilations", nsp, 1)
    op = _spatial(node, "output_padding", nsp, 0)
    sizes = list(x.shape[2:])
    full = [s[i] * (sizes[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1 for i in range(nsp)]
    auto = node.attr("auto_pad", "NOTSET")
    out_shape = node.attr("output_shape")
    if out_shape:
        out_shape = list(out_shape)[-nsp:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [sizes[i] * s[i] for i in range(nsp)]
    if out_shape:
        begin = []
        for i in range(nsp):
            total = full[i] - out_shape[i]
            begin.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    else:
        pads = [0] * (2 * nsp) if auto == "VALID" else _spatial(node, "pads", 2 * nsp, 0)
        begin = pads[:nsp]
        out_shape = [full[i] - pads[i] - pads[i + nsp] for i in range(nsp)]
    y = _CONV_T[nsp](x, w.to(x.dtype), None, s, 0, 0, int(node.attr("group", 1)), d)
    if any(op):
        y = F.pad(y, _torch_pads([0] * nsp + op))
    for i in range(nsp):
        y = y.narrow(2 + i, begin[i], out_shape[i])
    if b is not None:
        y = y + b.to(y.dtype).reshape(1, -1, *([1] * nsp))
    return [fused_activation(node, y)]


def _pool_geometry(
    node: Node, x: Tensor, nsp: int
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """kernel, strides, dilations, ONNX pads and the extra end padding ceil_mode needs."""
    k = [int(v) for v in node.attr("kernel_shape")]
    s = _spatial(node, "strides", nsp, 1)
    d = _spatial(node, "dilations", nsp, 1)
    sizes = list(x.shape[2:])
    pads = _same_pads(node, sizes, k, s, d)
    ceil = int(node.attr("ceil_mode", 0))
    extra = []
    for i in range(nsp):
        span = sizes[i] + pads[i] + pads[i + nsp] - ((k[i] - 1) * d[i] + 1)
        out = (math.ceil(span / s[i]) if ceil else span // s[i]) + 1
        if ceil and (out - 1) * s[i] >= sizes[i] + pads[i]:
            out -= 1  # windows may not start in the end padding
        extra.append(max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - (sizes[i] + pads[i] + pads[i + nsp]), 0))
    return k, s, d, pads, extra


@register("MaxPool")
def _max_pool(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    nsp = _check_rank(node, x)
    k, s, d, pads, extra = _pool_geometry(node, x, nsp)
    dtype = x.dtype
    xf = x if x.is_floating_point() else x.to(torch.float32)
    all_pads = pads[:nsp] + [pads[nsp + i] + extra[i] for i in range(nsp)]
    if any(all_pads):
        xf = F.pad(xf, _torch_pads(all_pads), value=float("-inf"))
    y = _MAXPOOL[nsp](xf, k, s, 0, d)
    return [y.to(dtype)]


def _window_sum(x: Tensor, k: list[int], s: list[int], d: list[int]) -> Tensor:
    """Sum over every window (per channel) as a depthwise convolution with a ones kernel."""
    nsp = len(k)
    lead = x.shape[:2]
    flat = x.reshape(-1, 1, *x.shape[2:])
    ones = torch.ones(1, 1, *k, dtype=x.dtype, device=x.device)
    y = _CONV[nsp](flat, ones, None, s, 0, d)
    return y.reshape(*lead, *y.shape[2:])


@register("AveragePool", "LpPool")
def _avg_pool(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """AveragePool (count_include_pad, ceil_mode, dilations) and LpPool ((sum |x|^p)^(1/p))."""
    need(inputs, 1, node)
    x = inputs[0]
    nsp = _check_rank(node, x)
    k, s, d, pads, extra = _pool_geometry(node, x, nsp)
    lp = node.op_type == "LpPool"
    p = float(node.attr("p", 2))
    v = x.abs() ** p if lp else x
    all_pads = pads[:nsp] + [pads[nsp + i] + extra[i] for i in range(nsp)]
    vp = F.pad(v, _torch_pads(all_pads)) if any(all_pads) else v
    total = _window_sum(vp, k, s, d)
    if lp:
        return [total ** (1.0 / p)]
    # divisor: window cells inside the input (or inside input+pads with count_include_pad)
    mask = torch.ones(1, 1, *x.shape[2:], dtype=x.dtype, device=x.device)
    if int(node.attr("count_include_pad", 0)):
        mask = F.pad(mask, _torch_pads(pads), value=1.0)
        mask = F.pad(mask, _torch_pads([0] * nsp + extra))
    else:
        mask = F.pad(mask, _torch_pads(all_pads))
    count = _window_sum(mask, k, s, d)
    return [total / count]


@register("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    dims = list(range(2, x.dim()))
    if node.op_type == "GlobalAveragePool":
        return [x.mean(dim=dims, keepdim=True)]
    if node.op_type == "GlobalMaxPool":
        return [x.amax(dim=dims, keepdim=True)]
    p = float(node.attr("p", 2))
    return [(x.abs() ** p).sum(dim=dims, keepdim=True) ** (1.0 / p)]
