"""Look-up-table kernels: the int8 256-entry path of the activation ops and the ``LUT``/``Gelu`` ops.

Facts (esp_dl_facts.md §3.3):

* int8: 256 entries, entry k ↔ input k − 128 (index = input XOR 0x80). For S8 nodes of
  Relu/LeakyRelu/PRelu/Clip/Sigmoid/Tanh/HardSigmoid/HardSwish/Swish/Elu/Exp/Log/Sqrt the runtime
  switches to the LUT module when the ``lut`` attribute names an initializer.
* int16 (only op types ``LUT`` and ``Gelu``): 65536/step + 1 entries, entry k ↔ input −32768 + k·step,
  ``step = 65536 // (entries − 1)``; the nearest entry is taken, ties on the index rounded with the
  target's ``lut_index_tie`` (P4 half even, others half up). No interpolation.
* The output exponent is the table's exponent (the runtime asserts they are equal).

The activation kernels (``kernels_act.py``) call :func:`lut_or_none` first; this module registers
only ``LUT`` and ``Gelu``.
"""

from __future__ import annotations

import numpy as np

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.espdl.model import EspdlTensor
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.targets.rounding import lut16_index


def _table(ctx: IntContext) -> EspdlTensor | None:
    """The initializer named by the node's ``lut`` attribute, or None."""
    name = ctx.attr("lut")
    if not isinstance(name, str) or not name:
        return None
    return ctx.initializer(name)


def _lut8(ctx: IntContext, x: QTensor, table: EspdlTensor) -> QTensor:
    vals = table.values()
    if vals.size != 256:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): int8 LUT '{table.name}' has {vals.size} "
            "entries, expected 256 (entry k for input k - 128)"
        )
    idx = x.data.astype(np.int16) + 128
    out = vals[idx].astype(np.int8)
    return QTensor(out, table.exponents[0] if table.exponents else 0)


def _lut16(ctx: IntContext, x: QTensor, table: EspdlTensor) -> QTensor:
    vals = table.values()
    if vals.size == 65536:  # step 1: the runtime computes 65536 / 65535 = 1 (§3.3)
        idx = x.data.astype(np.int64) + 32768
    else:
        idx = lut16_index(x.data, vals.size, ctx.target.lut_index_tie)
    idx = np.clip(idx, 0, vals.size - 1)
    out = vals[idx].astype(np.int16)
    return QTensor(out, table.exponents[0] if table.exponents else 0)


def lut_or_none(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor] | None:
    """The int8 table result of an activation node, or None when the node runs without a table.

    Returns ``[QTensor]`` when the node has a ``lut`` attribute naming an initializer and its input
    is int8 (§3.3: S16 activation ops compute in float even if a table was exported); else None.
    """
    if not inputs or inputs[0] is None or inputs[0].data.dtype != np.int8:
        return None
    table = _table(ctx)
    if table is None:
        return None
    return [_lut8(ctx, inputs[0], table)]


@register_int("LUT", "Gelu")
def lut_kernel(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """``LUT`` / ``Gelu``: pure table lookup, int8 (256 entries) or int16 (nearest entry)."""
    table = _table(ctx)
    if table is None:
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): attribute 'lut' = {ctx.attr('lut')!r} does "
            "not name an initializer; LUT/Gelu nodes need their table (re-export the model)"
        )
    x = inputs[0]
    if x is None:
        raise EspdlFormatError(f"node '{ctx.node.name}': LUT input must be an activation")
    if x.data.dtype == np.int8:
        return [_lut8(ctx, x, table)]
    if x.data.dtype == np.int16:
        return [_lut16(ctx, x, table)]
    raise UnsupportedOpError(
        f"node '{ctx.node.name}' ({ctx.node.op_type}): LUT input dtype {x.data.dtype} is not supported; "
        "ESP-DL tables exist for int8 and int16 only"
    )
