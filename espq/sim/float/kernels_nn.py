"""Linear algebra and normalisation kernels: Gemm, MatMul, Einsum, *Normalization, LRN."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from espq.ir.graph import Node
from espq.sim.float.kernels_elementwise import fused_activation
from espq.sim.float.registry import axis_of, need, register

Tensor = torch.Tensor


@register("Gemm")
def _gemm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Y = alpha * A' @ B' + beta * C (A' = A^T when transA, B' likewise)."""
    need(inputs, 2, node)
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    if int(node.attr("transA", 0)):
        a = a.t()
    if int(node.attr("transB", 0)):
        b = b.t()
    y = torch.matmul(a, b.to(a.dtype))
    alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if c is not None:
        y = y + (c.to(y.dtype) * beta if beta != 1.0 else c.to(y.dtype))
    return [fused_activation(node, y)]


@register("MatMul")
def _matmul(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    a, b = inputs[0], inputs[1]
    return [fused_activation(node, torch.matmul(a, b.to(a.dtype)))]


@register("Einsum")
def _einsum(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    eq = str(node.attr("equation")).replace(" ", "")
    return [torch.einsum(eq, *[x for x in inputs if x is not None])]


def _channel(p: Tensor, x: Tensor) -> Tensor:
    return p.to(x.dtype).reshape(1, -1, *([1] * (x.dim() - 2)))


@register("BatchNormalization")
def _batch_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Inference BatchNormalization with running mean/var (training_mode outputs are not produced)."""
    need(inputs, 5, node)
    x, scale, bias, mean, var = inputs[:5]
    eps = float(node.attr("epsilon", 1e-5))
    inv = torch.rsqrt(_channel(var, x) + eps)
    return [(x - _channel(mean, x)) * inv * _channel(scale, x) + _channel(bias, x)]


@register("InstanceNormalization")
def _instance_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    x, scale, bias = inputs[:3]
    eps = float(node.attr("epsilon", 1e-5))
    dims = list(range(2, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    return [(x - mean) * torch.rsqrt(var + eps) * _channel(scale, x) + _channel(bias, x)]


@register("LayerNormalization")
def _layer_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Normalise over axes [axis, rank); outputs Y, Mean, InvStdDev (stash_type float32)."""
    need(inputs, 2, node)
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = axis_of(int(node.attr("axis", -1)), x.dim())
    eps = float(node.attr("epsilon", 1e-5))
    dims = list(range(axis, x.dim()))
    xf = x.to(torch.float32)
    mean = xf.mean(dim=dims, keepdim=True)
    inv = torch.rsqrt(((xf - mean) ** 2).mean(dim=dims, keepdim=True) + eps)
    y = ((xf - mean) * inv).to(x.dtype) * scale.to(x.dtype)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return [y, mean, inv]


@register("RMSNormalization")
def _rms_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Y = X / sqrt(mean(X^2 over [axis, rank)) + epsilon) * scale (ONNX opset 23)."""
    need(inputs, 2, node)
    x, scale = inputs[0], inputs[1]
    axis = axis_of(int(node.attr("axis", -1)), x.dim())
    eps = float(node.attr("epsilon", 1e-5))
    dims = list(range(axis, x.dim()))
    xf = x.to(torch.float32)
    y = xf * torch.rsqrt((xf * xf).mean(dim=dims, keepdim=True) + eps)
    return [y.to(x.dtype) * scale.to(x.dtype)]


@register("LpNormalization")
def _lp_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Y = X / ||X||_p along ``axis`` (p = 1 or 2)."""
    need(inputs, 1, node)
    x = inputs[0]
    axis = axis_of(int(node.attr("axis", -1)), x.dim())
    p = int(node.attr("p", 2))
    norm = x.abs().sum(dim=axis, keepdim=True) if p == 1 else torch.sqrt((x * x).sum(dim=axis, keepdim=True))
    return [x / norm]


@register("MeanVarianceNormalization")
def _mvn(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    axes = [axis_of(a, x.dim()) for a in (node.attr("axes") or [0, 2, 3])]
    mean = x.mean(dim=axes, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=axes, keepdim=True)
    return [(x - mean) / (torch.sqrt(var) + 1e-9)]


@register("GroupNormalization")
def _group_norm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """GroupNormalization; scale/bias per channel (opset 21) or per group (opset 18)."""
    need(inputs, 3, node)
    x, scale, bias = inputs[:3]
    g = int(node.attr("num_groups"))
    eps = float(node.attr("epsilon", 1e-5))
    n, c = x.shape[:2]
    xg = x.reshape(n, g, -1)
    mean = xg.mean(dim=-1, keepdim=True)
    var = ((xg - mean) ** 2).mean(dim=-1, keepdim=True)
    y = ((xg - mean) * torch.rsqrt(var + eps)).reshape(x.shape)
    if scale.numel() == g and g != c:
        scale = scale.repeat_interleave(c // g)
        bias = bias.repeat_interleave(c // g)
    return [y * _channel(scale, x) + _channel(bias, x)]


@register("LRN")
def _lrn(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    size = int(node.attr("size"))
    alpha, beta, bias = (
        float(node.attr("alpha", 1e-4)),
        float(node.attr("beta", 0.75)),
        float(node.attr("bias", 1.0)),
    )
    sq = (x * x).unsqueeze(1)  # N,1,C,...
    pad_lo, pad_hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = F.pad(sq.reshape(x.shape[0], 1, x.shape[1], -1), (0, 0, pad_lo, pad_hi))
    summed = F.avg_pool2d(sq, (size, 1), stride=1).reshape(x.shape) * size
    return [x / (bias + alpha / size * summed) ** beta]
