"""Reductions and selections: Reduce*, ArgMax/ArgMin, TopK, Softmax, LogSoftmax, Hardmax."""

from __future__ import annotations

import math

import torch

from espq.ir.graph import Node
from espq.ir.ops import REDUCE_OPS
from espq.sim.float.registry import attr_or_input, axis_of, current_opset, need, register, scalar

Tensor = torch.Tensor


def _prod(x: Tensor, axes: list[int], keep: bool) -> Tensor:
    for a in sorted(axes, reverse=True):
        x = torch.prod(x, dim=a, keepdim=keep)
    return x


@register(*REDUCE_OPS)
def _reduce(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Reduce*: axes as attribute (older opsets) or input 1; keepdims; noop_with_empty_axes."""
    need(inputs, 1, node)
    x = inputs[0]
    axes = attr_or_input(node, inputs, "axes", 1)
    if not axes:
        if int(node.attr("noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(x.dim()))
    axes = sorted({axis_of(a, x.dim()) for a in axes})
    keep = bool(int(node.attr("keepdims", 1)))
    op = node.op_type
    if x.dim() == 0:
        return [x]
    if op == "ReduceSum":
        y = torch.sum(x, dim=axes, keepdim=keep)
    elif op == "ReduceMean":
        y = torch.mean(x.to(torch.float32) if not x.is_floating_point() else x, dim=axes, keepdim=keep)
    elif op == "ReduceMax":
        y = torch.amax(x, dim=axes, keepdim=keep)
    elif op == "ReduceMin":
        y = torch.amin(x, dim=axes, keepdim=keep)
    elif op == "ReduceProd":
        y = _prod(x, axes, keep)
    elif op == "ReduceL1":
        y = torch.sum(x.abs(), dim=axes, keepdim=keep)
    elif op == "ReduceL2":
        y = torch.sqrt(torch.sum(x * x, dim=axes, keepdim=keep))
    elif op == "ReduceLogSum":
        y = torch.log(torch.sum(x, dim=axes, keepdim=keep))
    elif op == "ReduceLogSumExp":
        y = torch.logsumexp(x, dim=axes, keepdim=keep)
    else:  # ReduceSumSquare
        y = torch.sum(x * x, dim=axes, keepdim=keep)
    return [y.to(x.dtype)]


@register("ArgMax", "ArgMin")
def _arg(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axis = axis_of(int(node.attr("axis", 0)), x.dim())
    keep = bool(int(node.attr("keepdims", 1)))
    last = bool(int(node.attr("select_last_index", 0)))
    fn = torch.argmax if node.op_type == "ArgMax" else torch.argmin
    if last:
        y = x.shape[axis] - 1 - fn(x.flip(axis), dim=axis, keepdim=keep)
    else:
        y = fn(x, dim=axis, keepdim=keep)
    return [y.to(torch.int64)]


@register("TopK")
def _topk(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """TopK (k as attribute in opset 1, input 1 later); ties keep the lower index first."""
    need(inputs, 1, node)
    x = inputs[0]
    k = int(node.attr("k")) if "k" in node.attrs else int(scalar(inputs[1]))
    axis = axis_of(int(node.attr("axis", -1)), x.dim())
    largest = bool(int(node.attr("largest", 1)))
    vals, idx = torch.sort(x, dim=axis, descending=largest, stable=True)
    return [vals.narrow(axis, 0, k), idx.narrow(axis, 0, k).to(torch.int64)]


def _softmax_like(node: Node, x: Tensor, fn) -> Tensor:
    """Softmax family: opset >= 13 works on one axis (default -1); older opsets coerce to 2-D."""
    if current_opset() >= 13:
        return fn(x, axis_of(int(node.attr("axis", -1)), x.dim()))
    axis = axis_of(int(node.attr("axis", 1)), x.dim())
    flat = x.reshape(math.prod(x.shape[:axis]), -1)
    return fn(flat, 1).reshape(x.shape)


def _hardmax(x: Tensor, axis: int) -> Tensor:
    idx = torch.argmax(x, dim=axis, keepdim=True)
    return torch.zeros_like(x).scatter(axis, idx, 1.0)


@register("Softmax", "LogSoftmax", "Hardmax")
def _softmax(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    fn = {
        "Softmax": lambda t, a: torch.softmax(t, a),
        "LogSoftmax": lambda t, a: torch.log_softmax(t, a),
        "Hardmax": _hardmax,
    }[node.op_type]
    return [_softmax_like(node, inputs[0], fn)]
