"""Element-wise arithmetic: Add, Sub, Mul, Div, Pow, Mod (esp_dl_facts.md §4.4, §4.5, §4.11).

* Add/Sub (int): ``saturate(a ± b)`` on the raw integers, no exponent handling (§4.4).
* Mul (int): ``round(a·b · 2^(e_a + e_b − e_out))``; P4/S3 multiply in integers and shift with the
  target rounding, C converts the product to float32 and multiplies by the float32 power of two before
  ``tool::round`` (``target.mul_rescale_in_float``, §4.5).
* Div, Pow, Mod (int): float32 math on the dequantised values, then ``round_target`` and saturation.
* F32 nodes compute in float32.

Broadcasting is numpy's (right-aligned, §4.4). A parameter operand is read from its initializer with its
own exponent.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError
from espq.sim.integer.base import IntContext, QTensor, register_int, saturate
from espq.targets.rounding import round_by_mode, shift_round


def operands(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Both operands as QTensors (initializers reshaped to their dims, with their first exponent)."""
    out = []
    for i in range(2):
        if i < len(inputs) and inputs[i] is not None:
            out.append(inputs[i])
        elif i in ctx.params:
            t = ctx.params[i]
            out.append(QTensor(t.values().reshape(t.dims), t.exponents[0] if t.exponents else 0))
        else:
            raise EspdlFormatError(f"node '{ctx.node.name}' ({ctx.node.op_type}): operand {i} is missing")
    return out


def _is_int(q: QTensor) -> bool:
    return np.issubdtype(q.data.dtype, np.integer)


def _out_dtype(ctx: IntContext, a: QTensor) -> np.dtype:
    dt = ctx.out_dtypes[0] if ctx.out_dtypes and ctx.out_dtypes[0] is not None else None
    return np.dtype(dt) if dt is not None else a.data.dtype


def _float_values(q: QTensor) -> np.ndarray:
    """float32 values of an operand (``int · 2^e`` in float32 for integers)."""
    if _is_int(q):
        return (q.data.astype(np.float32) * np.float32(2.0**q.exponent)).astype(np.float32)
    return q.data.astype(np.float32)


def _requant_float(ctx: IntContext, v: np.ndarray, a: QTensor) -> QTensor:
    """float32 result -> output tensor: ``saturate(round_target(v · 2^-e_out))`` or float32 as is."""
    dt = _out_dtype(ctx, a)
    e_out = ctx.out_exponents[0] if ctx.out_exponents else 0
    if not np.issubdtype(dt, np.integer):
        return QTensor(v.astype(dt), 0)
    scaled = (v.astype(np.float32) * np.float32(2.0**-e_out)).astype(np.float64)
    info = np.iinfo(dt)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=info.max, neginf=info.min)
    return QTensor(saturate(round_by_mode(scaled, ctx.rounding), dt), e_out)


@register_int("Add", "Sub")
def add_sub(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = operands(ctx, inputs)
    sign = 1 if ctx.node.op_type == "Add" else -1
    if _is_int(a) and _is_int(b):
        dt = _out_dtype(ctx, a)
        r = a.data.astype(np.int32) + sign * b.data.astype(np.int32)
        return [QTensor(saturate(r, dt), a.exponent)]
    r = _float_values(a) + np.float32(sign) * _float_values(b)
    return [_requant_float(ctx, r.astype(np.float32), a)]


@register_int("Mul")
def mul(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = operands(ctx, inputs)
    if not (_is_int(a) and _is_int(b)):
        return [_requant_float(ctx, (_float_values(a) * _float_values(b)).astype(np.float32), a)]
    dt = _out_dtype(ctx, a)
    e_out = ctx.out_exponents[0]
    prod = a.data.astype(np.int64) * b.data.astype(np.int64)
    shift = e_out - a.exponent - b.exponent
    if ctx.target.mul_rescale_in_float:
        scaled = prod.astype(np.float32) * np.float32(2.0**-shift)
        y = round_by_mode(scaled.astype(np.float64), ctx.rounding)
    else:
        y = shift_round(prod, shift, ctx.rounding, acc_bits=32)
    return [QTensor(saturate(y, dt), e_out)]


@register_int("Div")
def div(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = operands(ctx, inputs)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (_float_values(a) / _float_values(b)).astype(np.float32)
    return [_requant_float(ctx, r, a)]


@register_int("Pow")
def pow_(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    a, b = operands(ctx, inputs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.power(_float_values(a), _float_values(b)).astype(np.float32)
    return [_requant_float(ctx, r, a)]


@register_int("Mod")
def mod(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """``fmod=1``: C fmod (sign of the dividend); ``fmod=0``: sign of the divisor."""
    a, b = operands(ctx, inputs)
    fa, fb = _float_values(a), _float_values(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.fmod(fa, fb) if int(ctx.attr("fmod", 0)) else np.mod(fa, fb)
    return [_requant_float(ctx, r.astype(np.float32), a)]
