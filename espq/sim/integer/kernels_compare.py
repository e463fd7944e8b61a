"""Comparison kernels of the integer runner: Equal, Greater, GreaterOrEqual, Less, LessOrEqual.

esp_dl_facts.md §3.2 / §4.11 (``dl_base_greater.cpp`` etc.): the raw integers (or floats) are
compared with multidirectional broadcasting and a bool tensor is written. No exponent handling: the
exporter gives both inputs one exponent (``ExponentRule.EQUAL_INPUTS``). Constant inputs come from
initializers in their stored integer domain.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from espq.errors import EspdlFormatError
from espq.sim.integer.base import IntContext, QTensor, register_int

_OPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Equal": np.equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
}


def operand(ctx: IntContext, inputs: list[QTensor | None], i: int) -> np.ndarray:
    """Input ``i`` as stored: the activation's raw data, or the initializer's values in its dims."""
    if i < len(inputs) and inputs[i] is not None:
        return inputs[i].data
    p = ctx.params.get(i)
    if p is None:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): input {i} is missing; comparisons need two inputs"
        )
    return p.values().reshape([int(d) for d in p.dims])


@register_int(*_OPS)
def compare(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Element-wise comparison of the raw values with broadcasting; bool output (§4.11)."""
    a, b = operand(ctx, inputs, 0), operand(ctx, inputs, 1)
    return [QTensor(np.asarray(_OPS[ctx.node.op_type](a, b), dtype=np.bool_), 0)]
