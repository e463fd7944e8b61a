"""QuantizeLinear / DequantizeLinear / RequantizeLinear: one ESP-DL module, behaviour set by the dtypes and
exponents of input and output (``TensorBase::assign``, esp_dl_facts.md §4.9); the scale and zero-point
inputs are ignored.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError
from espq.sim.integer.base import IntContext, QTensor, register_int, saturate
from espq.targets.rounding import dequantize, quantize, shift_round


def convert(ctx: IntContext, x: QTensor, out_dtype: np.dtype, out_exp: int) -> np.ndarray:
    """``TensorBase::assign`` from ``x`` to a tensor of ``out_dtype`` / ``out_exp`` (§2.6, §4.9)."""
    src_int = np.issubdtype(x.data.dtype, np.integer)
    dst_int = np.issubdtype(out_dtype, np.integer)
    if src_int and dst_int:
        s = out_exp - x.exponent
        y = shift_round(x.data, s, ctx.target.rounding, acc_bits=64)
        return saturate(y, out_dtype)
    if dst_int:  # float -> int: float32 multiply by 2^-e, round, saturate
        bits = np.dtype(out_dtype).itemsize * 8
        return quantize(x.data.astype(np.float32), out_exp, bits, ctx.target.rounding).astype(out_dtype)
    if src_int:  # int -> float
        return dequantize(x.data, x.exponent).astype(out_dtype)
    return x.data.astype(out_dtype)


@register_int("QuantizeLinear", "DequantizeLinear", "RequantizeLinear")
def requantize_linear(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    x = inputs[0]
    if x is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' ({ctx.node.op_type}): input 0 must be an activation")
    out_dtype = (
        ctx.out_dtypes[0] if ctx.out_dtypes and ctx.out_dtypes[0] is not None else np.dtype(np.float32)
    )
    out_exp = ctx.out_exponents[0] if ctx.out_exponents else 0
    return [QTensor(convert(ctx, x, np.dtype(out_dtype), out_exp), out_exp)]
