"""Per-node cost features of an ESP-DL model: MACs, bytes moved, parameter bytes, quant type.

:func:`node_costs` walks the graph of an :class:`~espq.espdl.model.EspdlModel` (any object of that shape:
this layer does not import the file format) in order and returns one :class:`NodeCost` per node,
computed from the ValueInfo shapes (ESP-DL stores activations channel-last, so the last dimension of a
Conv/Gemm output is its channel count) and the initializers:

* Conv / Gemm / MatMul with a weight initializer: MACs = output elements x weight elements / output
  channels (the weight holds one kernel of ``K`` values per output channel; channel padding in stored
  weights counts as work the kernel does);
* MatMul of two activations: MACs = output elements x the first input's last dimension;
* kernel = product of the stored weight dims before the last two ([H, W, C, N], depthwise [H, W, N, 1],
  Conv1d [W, C, N]; esp_dl_facts.md "Conv weights"), 1 for Gemm/MatMul;
* bytes are unpadded element bytes (int8 1, int16 2, float 4); unknown shapes count 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from espq.ir.op_facts import OP_FACTS, Buffer, ops_with
from espq.targets.memory import itemsize

#: ops whose output is a view of the input (no data moved; esp_dl_facts.md §5.1 "unchanged buffer").
VIEW_OPS = ops_with(buffer=Buffer.VIEW)
#: int <-> float conversions: a float-typed output is the graph's dequantized result, not a fallback.
CONVERSION_OPS = ops_with(converts=True)
#: ops priced by multiply-accumulates.
MAC_OPS = frozenset({"Conv", "Gemm", "MatMul"})


@dataclass(frozen=True)
class NodeCost:
    """Cost features of one node.

    ``macs``: multiply-accumulates (Conv/Gemm/MatMul; 0 elsewhere); ``input_bytes`` / ``output_bytes``:
    activation bytes read / written (parameters excluded); ``param_bytes``: bytes of the node's
    initializer inputs (weights, bias, LUT); ``elements``: activation elements read + written;
    ``quant_type``: "S8" / "S16" / "F32" or None; ``depthwise``: a grouped Conv with one input channel per
    group; ``int16`` / ``float_fallback``: the node runs at 16 bit / computes in float (a float node, or
    an integer activation whose module reads no table; conversions from/to float,
    :data:`CONVERSION_OPS`, are not fallbacks); ``kernel``: kernel
    height x width of a MAC op (1 for Gemm/MatMul, which ESP-DL runs as 1x1 convolutions);
    ``in_channels`` / ``out_channels``: last dimension of the first input / the output (0 unknown).
    """

    name: str
    op_type: str
    quant_type: str | None
    macs: int
    input_bytes: int
    output_bytes: int
    param_bytes: int
    elements: int
    depthwise: bool = False
    int16: bool = False
    float_fallback: bool = False
    kernel: int = 1
    in_channels: int = 0
    out_channels: int = 0


#: quant_type spellings the ESP-DL loader accepts (as espq.espdl.validate.QUANT_TYPE_ALIASES).
_QUANT_TYPES = {"S8": "S8", "SYMM_S8": "S8", "S16": "S16", "SYMM_S16": "S16", "F32": "F32", "None": "F32"}


def _quant_type(node: Any) -> str | None:
    q = node.attr("quant_type")
    return _QUANT_TYPES.get(q) if isinstance(q, str) else None


def _computes_in_float(node: Any, qt: str | None, has_table: bool) -> bool:
    """An integer node whose ESP-DL module computes f(x) in float32 because it reads no table
    (esp_dl_facts.md §4.6: an S16 Sigmoid/Swish/... always, an S8 one without its ``lut``)."""
    facts = OP_FACTS.get(node.op_type)
    if facts is None or not facts.float_math or qt not in ("S8", "S16"):
        return False
    return not (has_table and int(qt[1:]) in facts.reads_lut_bits)


def _numel(v: Any) -> int:
    if v is None or v.shape is None or any(not isinstance(d, int) for d in v.shape):
        return 0
    return math.prod(v.shape)  # type: ignore[arg-type]


def _nbytes(v: Any) -> int:
    size = itemsize(v.elem_type) if v is not None else None
    return 0 if size is None else _numel(v) * size


def _macs(node: Any, model: Any, values: dict[str, Any]) -> int:
    g = model.graph
    if node.op_type not in MAC_OPS or not node.outputs or len(node.inputs) < 2:
        return 0
    out = values.get(node.outputs[0])
    out_n = _numel(out)
    if not out_n or not out.shape:  # type: ignore[union-attr]
        return 0
    weight = g.initializers.get(node.inputs[1])
    if weight is not None:
        channels = int(out.shape[-1]) or 1  # type: ignore[union-attr, arg-type]
        return out_n * weight.numel // channels
    first = values.get(node.inputs[0])
    if first is None or not first.shape or not isinstance(first.shape[-1], int):
        return 0
    return out_n * first.shape[-1]


def _depthwise(node: Any, values: dict[str, Any]) -> bool:
    group = int(node.attr("group", 1) or 1)
    if node.op_type != "Conv" or group == 1:
        return False
    x = values.get(node.inputs[0]) if node.inputs else None
    channels = x.shape[-1] if x is not None and x.shape else None
    return isinstance(channels, int) and channels == group


def _geometry(node: Any, model: Any, values: dict[str, Any]) -> dict[str, int]:
    """Kernel h x w (stored weight dims before [C, N]; 1 for Gemm/MatMul) and in/out channel counts."""
    if node.op_type not in MAC_OPS or not node.inputs or not node.outputs:
        return {}
    x, y = values.get(node.inputs[0]), values.get(node.outputs[0])
    weight = model.graph.initializers.get(node.inputs[1]) if len(node.inputs) > 1 else None
    kernel = math.prod(weight.dims[:-2]) if node.op_type == "Conv" and weight is not None else 1
    last = [v.shape[-1] if v is not None and v.shape and isinstance(v.shape[-1], int) else 0 for v in (x, y)]
    return {"kernel": int(kernel), "in_channels": int(last[0]), "out_channels": int(last[1])}


def node_costs(model: Any) -> list[NodeCost]:
    """One :class:`NodeCost` per node of an :class:`~espq.espdl.model.EspdlModel`, in graph order."""
    g = model.graph
    values = {v.name: v for v in (*g.inputs, *g.value_info, *g.outputs)}
    costs = []
    for node in g.nodes:
        params = [t for t in node.inputs if t in g.initializers]
        lut = node.attr("lut")
        has_table = isinstance(lut, str) and lut in g.initializers
        if has_table:
            params.append(lut)
        acts_in = [values.get(t) for t in node.inputs if t and t not in g.initializers]
        acts_out = [values.get(t) for t in node.outputs]
        qt = _quant_type(node)
        out_float = any(v is not None and v.elem_type == 1 for v in acts_out)
        costs.append(
            NodeCost(
                name=node.name,
                op_type=node.op_type,
                quant_type=qt,
                macs=_macs(node, model, values),
                input_bytes=sum(_nbytes(v) for v in acts_in),
                output_bytes=sum(_nbytes(v) for v in acts_out),
                param_bytes=sum(len(g.initializers[t].raw) for t in params),
                elements=sum(_numel(v) for v in (*acts_in, *acts_out)),
                depthwise=_depthwise(node, values),
                int16=qt == "S16",
                float_fallback=node.op_type not in CONVERSION_OPS
                and (qt == "F32" or (qt is None and out_float) or _computes_in_float(node, qt, has_table)),
                **_geometry(node, model, values),
            )
        )
    return costs


def float_math_nodes(model: Any) -> list[str]:
    """Names of the integer-typed (S8/S16) nodes of ``model`` that the chip computes in float32
    (dequantize, f(x), requantize per element): int16 activations exported without a ``LUT`` op, int8
    ones without a table. Users measured ~660 ms per such layer on a YOLO26 head (esp_ppq_2026.md §1.15)."""
    return [c.name for c in node_costs(model) if c.float_fallback and c.quant_type in ("S8", "S16")]


__all__ = ["CONVERSION_OPS", "MAC_OPS", "VIEW_OPS", "NodeCost", "float_math_nodes", "node_costs"]
