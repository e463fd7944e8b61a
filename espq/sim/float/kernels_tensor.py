"""Indexing and tensor-creation kernels: Gather*, Scatter*, Range, Constant*, NonZero, OneHot, ..."""

from __future__ import annotations

import math

import numpy as np
import torch

from espq.errors import UnsupportedOpError
from espq.ir.graph import Node
from espq.sim.float.registry import axis_of, ints, need, numpy_to_torch, onnx_dtype_to_torch, register, scalar

Tensor = torch.Tensor


def _wrap(idx: Tensor, dim: int) -> Tensor:
    idx = idx.to(torch.long)
    return torch.where(idx < 0, idx + dim, idx)


@register("Gather")
def _gather(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, idx = inputs[0], inputs[1]
    axis = axis_of(int(node.attr("axis", 0)), x.dim())
    flat = _wrap(idx, x.shape[axis]).reshape(-1)
    y = x.index_select(axis, flat)
    return [y.reshape((*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :]))]


@register("GatherElements")
def _gather_elements(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, idx = inputs[0], inputs[1]
    axis = axis_of(int(node.attr("axis", 0)), x.dim())
    return [torch.gather(x, axis, _wrap(idx, x.shape[axis]))]


@register("GatherND")
def _gather_nd(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, idx = inputs[0], inputs[1].to(torch.long)
    b = int(node.attr("batch_dims", 0))
    k = idx.shape[-1]
    batch = x.shape[:b]
    nb = math.prod(batch)
    xb = x.reshape(nb, *x.shape[b:])
    ib = idx.reshape(nb, -1, k)
    dims = torch.tensor(x.shape[b : b + k], device=x.device)
    ib = torch.where(ib < 0, ib + dims, ib)
    rows = []
    for i in range(nb):
        rows.append(xb[i][tuple(ib[i, :, j] for j in range(k))])
    y = torch.stack(rows) if rows else xb[:0]
    return [y.reshape((*idx.shape[:-1], *x.shape[b + k :]))]


def _flat_positions(data_shape: tuple[int, ...], idx: Tensor) -> Tensor:
    """Row-major position over the first k dims of ``data_shape`` for each k-tuple of ``idx``."""
    k = idx.shape[-1]
    dims = torch.tensor(data_shape[:k], device=idx.device)
    idx = torch.where(idx < 0, idx + dims, idx)
    strides = torch.tensor([math.prod(data_shape[i + 1 : k]) for i in range(k)], device=idx.device)
    return (idx.reshape(-1, k) * strides).sum(-1)


@register("ScatterND")
def _scatter_nd(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    x, idx, upd = inputs[0], inputs[1].to(torch.long), inputs[2]
    k = idx.shape[-1]
    pos = _flat_positions(tuple(x.shape), idx)
    out = x.clone().reshape(math.prod(x.shape[:k]), -1)
    upd = upd.reshape(pos.numel(), -1).to(x.dtype)
    red = node.attr("reduction", "none")
    if red == "none":
        out[pos] = upd
    else:
        mode = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[red]
        index = pos.unsqueeze(1).expand(-1, out.shape[1])
        out = out.scatter_reduce(0, index, upd, mode, include_self=True)
    return [out.reshape(x.shape)]


@register("ScatterElements", "Scatter")
def _scatter_elements(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    x, idx, upd = inputs[0], inputs[1], inputs[2].to(inputs[0].dtype)
    axis = axis_of(int(node.attr("axis", 0)), x.dim())
    idx = _wrap(idx, x.shape[axis])
    red = node.attr("reduction", "none")
    if red == "none":
        return [x.scatter(axis, idx, upd)]
    mode = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[red]
    return [x.scatter_reduce(axis, idx, upd, mode, include_self=True)]


@register("Range")
def _range(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    start, limit, delta = inputs[0], inputs[1], inputs[2]
    n = max(int(math.ceil((scalar(limit) - scalar(start)) / scalar(delta))), 0)
    y = scalar(start) + torch.arange(n, device=start.device, dtype=torch.float64) * scalar(delta)
    return [y.to(start.dtype)]


@register("ConstantOfShape")
def _constant_of_shape(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    value = node.attr("value")
    fill = numpy_to_torch(np.asarray(value).reshape(-1)[:1], inputs[0].device) if value is not None else None
    if fill is None:
        fill = torch.zeros(1, dtype=torch.float32, device=inputs[0].device)
    return [fill.reshape(()).expand(tuple(ints(inputs[0]))).clone()]


@register("Constant")
def _constant(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    a = node.attrs
    if "value" in a:
        arr = np.asarray(a["value"])
    elif "value_float" in a:
        arr = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        arr = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        arr = np.array(a["value_int"], dtype=np.int64)
    elif "value_ints" in a:
        arr = np.array(a["value_ints"], dtype=np.int64)
    else:
        raise UnsupportedOpError(
            f"Constant node '{node.name}' has none of value/value_float(s)/value_int(s); string and sparse "
            "constants are not supported"
        )
    return [numpy_to_torch(arr)]


@register("NonZero")
def _nonzero(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    if x.dim() == 0:
        x = x.reshape(1)
    return [torch.nonzero(x).t().contiguous().to(torch.int64)]


@register("OneHot")
def _one_hot(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    idx, depth, values = inputs[0], int(scalar(inputs[1])), inputs[2]
    idx = idx.to(torch.long)
    idx = torch.where(idx < 0, idx + depth, idx)
    classes = torch.arange(depth, device=idx.device)
    hot = idx.unsqueeze(-1) == classes
    axis = axis_of(int(node.attr("axis", -1)), idx.dim() + 1)
    hot = hot.movedim(-1, axis)
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return [torch.where(hot, on, off)]


@register("Trilu")
def _trilu(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    k = int(scalar(inputs[1] if len(inputs) > 1 else None, 0))
    x = inputs[0]
    return [torch.triu(x, k) if int(node.attr("upper", 1)) else torch.tril(x, k)]


@register("CumSum")
def _cumsum(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x = inputs[0]
    axis = axis_of(int(scalar(inputs[1])), x.dim())
    if int(node.attr("reverse", 0)):
        x = x.flip(axis)
    y = torch.cumsum(x, axis).to(x.dtype)
    if int(node.attr("exclusive", 0)):
        y = y - x
    if int(node.attr("reverse", 0)):
        y = y.flip(axis)
    return [y]


@register("ReverseSequence")
def _reverse_sequence(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Reverse the first seq_lens[b] steps of every batch entry along time_axis."""
    need(inputs, 2, node)
    x, lens = inputs[0], inputs[1].to(torch.long)
    b_ax, t_ax = int(node.attr("batch_axis", 1)), int(node.attr("time_axis", 0))
    steps = x.shape[t_ax]
    t = torch.arange(steps, device=x.device).unsqueeze(0)  # [1, T]
    L = lens.unsqueeze(1)  # [B, 1]
    src = torch.where(t < L, L - 1 - t, t)  # [B, T]
    xb = x.movedim((b_ax, t_ax), (0, 1))
    index = src.reshape(*src.shape, *([1] * (xb.dim() - 2))).expand_as(xb)
    return [torch.gather(xb, 1, index).movedim((0, 1), (b_ax, t_ax))]


@register("EyeLike")
def _eye_like(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    k = int(node.attr("k", 0))
    dtype = x.dtype
    if node.attr("dtype") is not None:
        dtype = onnx_dtype_to_torch(int(node.attr("dtype")), node)
    r, c = x.shape
    i = torch.arange(r, device=x.device).unsqueeze(1)
    j = torch.arange(c, device=x.device).unsqueeze(0)
    return [(j - i == k).to(dtype)]
