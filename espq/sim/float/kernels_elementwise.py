"""Element-wise kernels: math, activations, arithmetic, comparisons, logic, casts, quantisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from espq.errors import UnsupportedOpError
from espq.ir.graph import Node
from espq.sim.float.registry import KERNELS, need, onnx_dtype_to_torch, register, scalar

Tensor = torch.Tensor


def _unary(fn: Callable[[Node, Tensor], Tensor], *ops: str) -> None:
    def kernel(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
        need(inputs, 1, node)
        return [fn(node, inputs[0])]

    register(*ops)(kernel)


def fused_activation(node: Node, y: Tensor) -> Tensor:
    """ESP-DL's `activation` attribute on Conv/Gemm/MatMul (esp_dl_facts §2.2): Linear/None or Relu."""
    act = node.attr("activation")
    if act is None or act in ("Linear", "None", ""):
        return y
    if act in ("Relu", "ReLU"):
        return torch.relu(y)
    raise UnsupportedOpError(
        f"node '{node.name}' ({node.op_type}): fused activation '{act}' is not supported (ESP-DL only wires "
        "Linear and Relu); split the activation into its own node"
    )


# ---------------------------------------------------------------------------- plain math
_SIMPLE: dict[str, Callable[[Tensor], Tensor]] = {
    "Abs": torch.abs,
    "Neg": torch.neg,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Reciprocal": torch.reciprocal,
    "Sign": torch.sign,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Round": torch.round,  # round half to even, as ONNX
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Erf": torch.erf,
    "Sin": torch.sin,
    "Cos": torch.cos,
    "Tan": torch.tan,
    "Asin": torch.asin,
    "Acos": torch.acos,
    "Atan": torch.atan,
    "Sinh": torch.sinh,
    "Cosh": torch.cosh,
    "Asinh": torch.asinh,
    "Acosh": torch.acosh,
    "Atanh": torch.atanh,
    "Softsign": lambda x: x / (1 + x.abs()),
    "Softplus": lambda x: torch.log1p(torch.exp(-x.abs())) + torch.clamp(x, min=0),
    "Mish": lambda x: x * torch.tanh(F.softplus(x)),
    "IsNaN": torch.isnan,
    "Not": torch.logical_not,
    "HardSwish": lambda x: x * torch.clamp(x / 6 + 0.5, 0, 1),
}
for _op, _fn in _SIMPLE.items():
    _unary(lambda node, x, _fn=_fn: _fn(x), _op)


_unary(lambda n, x: F.leaky_relu(x, float(n.attr("alpha", 0.01))), "LeakyRelu")
_unary(lambda n, x: F.elu(x, float(n.attr("alpha", 1.0))), "Elu")
_unary(lambda n, x: F.celu(x, float(n.attr("alpha", 1.0))), "Celu")
_unary(
    lambda n, x: torch.where(x > float(n.attr("alpha", 1.0)), x, torch.zeros_like(x)),
    "ThresholdedRelu",
)
_unary(
    lambda n, x: (
        float(n.attr("gamma", 1.05070102214813232421875))
        * torch.where(x > 0, x, float(n.attr("alpha", 1.67326319217681884765625)) * (torch.exp(x) - 1))
    ),
    "Selu",
)
_unary(
    lambda n, x: torch.clamp(float(n.attr("alpha", 0.2)) * x + float(n.attr("beta", 0.5)), 0, 1),
    "HardSigmoid",
)
# ESP-DL Swish: x * sigmoid(alpha * x), alpha defaults to 1 (ESP-PPQ fuses Sigmoid*Mul into it)
_unary(lambda n, x: x * torch.sigmoid(float(n.attr("alpha", 1.0)) * x), "Swish")


def _gelu(node: Node, x: Tensor) -> Tensor:
    approx = node.attr("approximate", "none")
    return F.gelu(x, approximate="tanh" if approx == "tanh" else "none")


_unary(_gelu, "Gelu")


def _shrink(node: Node, x: Tensor) -> Tensor:
    lambd, bias = float(node.attr("lambd", 0.5)), float(node.attr("bias", 0.0))
    return torch.where(x < -lambd, x + bias, torch.where(x > lambd, x - bias, torch.zeros_like(x)))


_unary(_shrink, "Shrink")


def _is_inf(node: Node, x: Tensor) -> Tensor:
    neg, pos = int(node.attr("detect_negative", 1)), int(node.attr("detect_positive", 1))
    out = torch.zeros_like(x, dtype=torch.bool)
    if pos:
        out |= torch.isposinf(x)
    if neg:
        out |= torch.isneginf(x)
    return out


_unary(_is_inf, "IsInf")


@register("PRelu")
def _prelu(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    x, slope = inputs[0], inputs[1]
    return [torch.where(x >= 0, x, x * slope.to(x.dtype))]


@register("Identity", "RequantizeLinear")
def _identity(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Identity; RequantizeLinear is a pure exponent change, i.e. identity in float (§4.9)."""
    need(inputs, 1, node)
    return [inputs[0]]


@register("Dropout")
def _dropout(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    x = inputs[0]
    return [x, torch.ones_like(x, dtype=torch.bool)]


# ---------------------------------------------------------------------------- binary ops
def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point() or b.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc")


def _pow(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point():
        return torch.pow(a, b.to(a.dtype))
    return torch.pow(a.to(torch.float64), b.to(torch.float64)).to(a.dtype)


def _binary(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    a, b = inputs[0], inputs[1]
    op = node.op_type
    if op in ("Add", "Sub", "Mul", "Div") and a.dtype != b.dtype:
        b = b.to(a.dtype)
    if op == "Add":
        y = a + b
    elif op == "Sub":
        y = a - b
    elif op == "Mul":
        y = a * b
    elif op == "Div":
        y = _div(a, b)
    elif op == "Pow":
        y = _pow(a, b)
    elif op == "Mod":
        b = b.to(a.dtype)
        y = torch.fmod(a, b) if int(node.attr("fmod", 0)) else torch.remainder(a, b)
    elif op == "Equal":
        y = a == b
    elif op == "Greater":
        y = a > b
    elif op == "GreaterOrEqual":
        y = a >= b
    elif op == "Less":
        y = a < b
    elif op == "LessOrEqual":
        y = a <= b
    elif op == "And":
        y = torch.logical_and(a, b)
    elif op == "Or":
        y = torch.logical_or(a, b)
    elif op == "Xor":
        y = torch.logical_xor(a, b)
    elif op == "BitwiseAnd":
        y = torch.bitwise_and(a, b)
    elif op == "BitwiseOr":
        y = torch.bitwise_or(a, b)
    else:  # BitwiseXor
        y = torch.bitwise_xor(a, b)
    return [y]


register(
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "And",
    "Or",
    "Xor",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
)(_binary)


@register("Min", "Max", "Sum", "Mean")
def _variadic(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    xs = [x for x in inputs if x is not None]
    if not xs:
        need(inputs, 1, node)
    y = xs[0]
    for x in xs[1:]:
        if node.op_type == "Min":
            y = torch.minimum(y, x)
        elif node.op_type == "Max":
            y = torch.maximum(y, x)
        else:
            y = y + x
    if node.op_type == "Mean":
        y = y / len(xs)
    return [y]


@register("Where")
def _where(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 3, node)
    c, a, b = inputs[0], inputs[1], inputs[2]
    return [torch.where(c.to(torch.bool), a, b.to(a.dtype))]


@register("Clip")
def _clip(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """Clip: bounds as attributes (opset < 11) or optional inputs 1 and 2 (opset >= 11)."""
    need(inputs, 1, node)
    x = inputs[0]
    lo = node.attr("min")
    hi = node.attr("max")
    if len(inputs) > 1 and inputs[1] is not None:
        lo = scalar(inputs[1])
    if len(inputs) > 2 and inputs[2] is not None:
        hi = scalar(inputs[2])
    if lo is not None:
        x = torch.clamp(x, min=lo)
    if hi is not None:
        x = torch.clamp(x, max=hi)
    return [x]


@register("Cast")
def _cast(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 1, node)
    return [inputs[0].to(onnx_dtype_to_torch(int(node.attr("to")), node))]


@register("CastLike")
def _cast_like(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    need(inputs, 2, node)
    return [inputs[0].to(inputs[1].dtype)]


# ---------------------------------------------------------------------------- quantisation
def _per_axis(node: Node, p: Tensor, x: Tensor) -> Tensor:
    """Broadcast a scale/zero-point (scalar or 1-D along ``axis``) against ``x`` (ONNX Q/DQ)."""
    if int(node.attr("block_size", 0)):
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_type}): blocked quantization (block_size) is not supported; "
            "use per-tensor or per-axis scales"
        )
    if p.numel() == 1:
        return p.reshape(())
    axis = int(node.attr("axis", 1))
    axis = axis + x.dim() if axis < 0 else axis
    shape = [1] * x.dim()
    shape[axis] = p.numel()
    return p.reshape(shape)


_QRANGE = {
    torch.uint8: (0, 255),
    torch.int8: (-128, 127),
    torch.int16: (-32768, 32767),
    torch.int32: (-(2**31), 2**31 - 1),
}


@register("QuantizeLinear")
def _quantize_linear(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """y = saturate(round_half_even(x / scale) + zero_point); dtype of zero_point (default uint8)."""
    need(inputs, 2, node)
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    if zp is not None:
        dtype = zp.dtype
    elif node.attr("output_dtype"):
        dtype = onnx_dtype_to_torch(int(node.attr("output_dtype")), node)
    else:
        dtype = torch.uint8
    lo, hi = _QRANGE.get(dtype, (-(2**31), 2**31 - 1))
    q = torch.round(x.to(torch.float32) / _per_axis(node, scale.to(torch.float32), x))
    if zp is not None:
        q = q + _per_axis(node, zp.to(torch.float32), x)
    return [torch.clamp(q, lo, hi).to(dtype)]


@register("DequantizeLinear")
def _dequantize_linear(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """y = (x - zero_point) * scale."""
    need(inputs, 2, node)
    x, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    xf = x.to(torch.float32)
    if zp is not None:
        xf = xf - _per_axis(node, zp.to(torch.float32), x)
    return [(xf * _per_axis(node, scale.to(torch.float32), x)).to(scale.dtype)]


@register("LUT")
def _lut(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """ESP-DL LUT (esp_dl_facts §3.3): a table of an activation on the integer grid.

    In float the table's input/output scales are unknown, so the node evaluates the float op it
    replaced, named by its ``original_op_type`` attribute (e.g. Gelu, HardSwish) with the node's
    other attributes; the ``lut`` table itself is ignored.
    """
    original = node.attr("original_op_type")
    if not original or original == "LUT" or original not in KERNELS:
        raise UnsupportedOpError(
            f"LUT node '{node.name}' has original_op_type={original!r}; the float executor can only run a "
            "LUT whose original op type has a float kernel; set original_op_type to that op"
        )
    table = node.attr("lut")
    keep = [i for i, name in enumerate(node.inputs) if not (table and name == table)]
    proxy = Node(
        node.name, str(original), [node.inputs[i] for i in keep], node.outputs, node.attrs, node.domain
    )
    return KERNELS[str(original)](proxy, [inputs[i] for i in keep])
