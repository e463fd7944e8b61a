"""Per-node cost features of an `.espdl` model: MACs, bytes moved, parameter bytes, quant type.

:func:`node_costs` walks the graph in order and returns one :class:`espq.targets.latency.NodeCost` per
node, computed from the ValueInfo shapes (ESP-DL stores activations channel-last, so the last dimension
of a Conv/Gemm output is its channel count) and the initializers:

* Conv / Gemm / MatMul with a weight initializer: MACs = output elements x weight elements / output
  channels (the weight holds one kernel of ``K`` values per output channel; channel padding in stored
  weights counts as work the kernel does);
* MatMul of two activations: MACs = output elements x the first input's last dimension;
* bytes are unpadded element bytes (int8 1, int16 2, float 4); unknown shapes count 0.
"""

from __future__ import annotations

import math

from espq.espdl.model import EspdlModel, EspdlNode, EspdlValueInfo
from espq.espdl.schema import NUMPY_DTYPES
from espq.espdl.validate import quant_type_of
from espq.targets.latency import MAC_OPS, NodeCost


def _numel(v: EspdlValueInfo | None) -> int:
    if v is None or v.shape is None or any(not isinstance(d, int) for d in v.shape):
        return 0
    return math.prod(v.shape)  # type: ignore[arg-type]


def _nbytes(v: EspdlValueInfo | None) -> int:
    if v is None or v.elem_type not in NUMPY_DTYPES:
        return 0
    return _numel(v) * NUMPY_DTYPES[v.elem_type].itemsize


def _macs(node: EspdlNode, model: EspdlModel, values: dict[str, EspdlValueInfo]) -> int:
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


def _depthwise(node: EspdlNode, values: dict[str, EspdlValueInfo]) -> bool:
    group = int(node.attr("group", 1) or 1)
    if node.op_type != "Conv" or group == 1:
        return False
    x = values.get(node.inputs[0]) if node.inputs else None
    channels = x.shape[-1] if x is not None and x.shape else None
    return isinstance(channels, int) and channels == group


def node_costs(model: EspdlModel) -> list[NodeCost]:
    """One :class:`~espq.targets.latency.NodeCost` per node of ``model``, in graph order."""
    g = model.graph
    values = {v.name: v for v in (*g.inputs, *g.value_info, *g.outputs)}
    costs = []
    for node in g.nodes:
        params = [t for t in node.inputs if t in g.initializers]
        lut = node.attr("lut")
        if isinstance(lut, str) and lut in g.initializers:
            params.append(lut)
        acts_in = [values.get(t) for t in node.inputs if t and t not in g.initializers]
        acts_out = [values.get(t) for t in node.outputs]
        qt = quant_type_of(node)
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
                float_fallback=qt == "F32" or (qt is None and out_float),
            )
        )
    return costs


__all__ = ["node_costs"]
