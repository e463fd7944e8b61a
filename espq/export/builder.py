"""Lowered export state -> :class:`espq.espdl.EspdlModel` (esp_dl_facts.md §2.1, §9;
esp_ppq_facts.md §4.3-§4.6, Appendix C).

* nodes in graph order with their attributes (``quant_type`` on every node);
* initializers: LUT tables first (as ESP-PPQ), then every parameter in node order: weights of
  Conv/Gemm/MatMul in the target layout (``layout ==> …``), biases INT32 / INT64 saturated to the
  target's bias bits, other quantized parameters INT8/INT16, the rest in their own dtype with
  exponent [0] (``layout ==> UNK``); scalars get dims [1] (never []); a parameter read by two nodes
  is duplicated;
* a ValueInfo for every activation (graph inputs and every node output) with the exported-layout
  shape and one exponent ([0] for float/bool tensors); graph inputs/outputs duplicated in
  ``Graph.input`` / ``Graph.output``.
"""

from __future__ import annotations

import numpy as np

from espq.errors import UnsupportedOpError
from espq.espdl.model import LAYOUT_PREFIX, EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.schema import TensorDataType
from espq.export.lower.state import ExportState
from espq.export.weights import (
    conv_weight_layout,
    exponent_list,
    gemm_weight_layout,
    matmul_weight_layout,
    to_int,
)
from espq.ir import Node
from espq.ir.quant_rules import WEIGHTED_OPS
from espq.ir.spec import F32, TensorSpec

DT = TensorDataType
_NUMPY_TO_DT = {
    np.dtype(np.float32): DT.FLOAT,
    np.dtype(np.float64): DT.FLOAT,  # float parameters/activations are float32 on the chip
    np.dtype(np.float16): DT.FLOAT16,
    np.dtype(np.int8): DT.INT8,
    np.dtype(np.uint8): DT.UINT8,
    np.dtype(np.int16): DT.INT16,
    np.dtype(np.uint16): DT.UINT16,
    np.dtype(np.int32): DT.INT32,
    np.dtype(np.int64): DT.INT64,
    np.dtype(np.uint32): DT.UINT32,
    np.dtype(np.uint64): DT.UINT64,
    np.dtype(np.bool_): DT.BOOL,
}
WEIGHTED = WEIGHTED_OPS


def int_type(bits: int) -> int:
    """TensorDataType of ``bits``-wide integers (8, 16, 32, 64; 20/40-bit values use 32/64)."""
    if bits <= 8:
        return DT.INT8
    if bits <= 16:
        return DT.INT16
    return DT.INT32 if bits <= 32 else DT.INT64


def data_type_of(dtype: np.dtype, what: str) -> int:
    try:
        return int(_NUMPY_TO_DT[np.dtype(dtype)])
    except KeyError:
        raise UnsupportedOpError(f"{what}: dtype {dtype} cannot be stored in a .espdl file") from None


def _attr_value(v):
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        v = v.reshape(-1).tolist() if v.ndim else v.item()
    if isinstance(v, (list, tuple)):
        return [_attr_value(x) for x in v]
    return v


def _node(node: Node) -> EspdlNode:
    attrs = {k: _attr_value(v) for k, v in node.attrs.items() if v is not None}
    attrs = {k: v for k, v in attrs.items() if not (isinstance(v, list) and not v)}
    return EspdlNode(node.name, node.op_type, list(node.inputs), list(node.outputs), attrs)


def _weight(state: ExportState, node: Node, name: str, spec: TensorSpec) -> EspdlTensor:
    w = np.asarray(state.graph.initializers[name])
    q = to_int(w, spec)
    bits = spec.bits
    if node.op_type == "Conv":
        group = int(node.attr("group", 1))
        depthwise = group > 1
        if depthwise and (w.shape[1] != 1 or w.shape[0] != group):
            raise UnsupportedOpError(
                f"Conv '{node.name}': group={group} with filter {list(w.shape)}; ESP-DL runs regular "
                "(group 1) and depthwise (group = in = out channels) convolutions only; "
                "split the grouped conv"
            )
        flat, dims, tag = conv_weight_layout(q, state.target, bits, depthwise)
    elif node.op_type == "Gemm":
        flat, dims, tag = gemm_weight_layout(q, state.target, bits)
    else:
        flat, dims, tag = matmul_weight_layout(q, state.target, bits)
    t = EspdlTensor.from_array(name, flat, int_type(bits), exponent_list(spec), LAYOUT_PREFIX + tag)
    t.dims = [int(d) for d in dims]
    return t


def _parameter(state: ExportState, node: Node, idx: int, name: str) -> EspdlTensor:
    value = np.asarray(state.graph.initializers[name])
    spec = state.params.get(name)
    quantized = spec is not None and spec.exponent is not None and np.issubdtype(value.dtype, np.floating)
    weight_idx, bias_idx = WEIGHTED.get(node.op_type, (None, None))
    if quantized and state.quant_type(node) != F32 and idx == weight_idx:
        return _weight(state, node, name, spec)
    if quantized and idx == bias_idx:
        q = to_int(value, spec)
        storage = state.target.bias_storage_bits[8 if state.quant_type(node) == "S8" else 16]
        arr, dt, exps = q, int_type(storage), exponent_list(spec)
    elif quantized:
        arr, dt, exps = to_int(value, spec), int_type(spec.bits), exponent_list(spec)
    else:
        arr, dt, exps = value, data_type_of(value.dtype, f"initializer '{name}'"), [0]
    if arr.ndim == 0:
        arr = arr.reshape(1)  # rank-0 parameters crash the loader (§2.1)
    return EspdlTensor.from_array(name, arr, dt, exps, LAYOUT_PREFIX + "UNK")


def _value_info(state: ExportState, name: str) -> EspdlValueInfo:
    spec = state.specs.get(name)
    if spec is not None and spec.exponent is not None:
        elem, exps = int_type(spec.bits), [int(spec.exponent)]
    else:
        info = state.graph.values.get(name)
        dtype = info.dtype if info is not None else np.dtype(np.float32)
        elem, exps = data_type_of(dtype, f"tensor '{name}'"), [0]
    return EspdlValueInfo(name, elem, state.exported_shape(name), exps)


def _split_shared(state: ExportState) -> None:
    g = state.graph
    seen: set[str] = set()
    for node in g.nodes:
        for i, t in enumerate(node.inputs):
            if not t or t not in g.initializers:
                continue
            if t in seen and node.inputs.index(t) == i:
                new = g.unique_name(f"{t}_{node.name}")
                g.initializers[new] = g.initializers[t]
                if t in state.params:
                    state.params[new] = state.params[t]
                node.inputs = [new if x == t else x for x in node.inputs]
            seen.add(t)
    g.invalidate()


def build_model(
    state: ExportState,
    metadata_props: dict[str, str],
    model_version: int,
    doc_string: str,
    producer_version: str,
    ir_version: int = 8,
) -> EspdlModel:
    """The EspdlModel of a fully lowered ``state`` (test values are added by the caller)."""
    _split_shared(state)
    g = state.graph
    inits: dict[str, EspdlTensor] = {}
    for name, (table, exp) in state.luts.items():
        dt = DT.INT8 if table.size == 256 else DT.INT16  # int16 tables have 65536/step + 1 >= 257 entries
        inits[name] = EspdlTensor.from_array(name, table, dt, [exp])
    for node in g.nodes:
        for i, t in enumerate(node.inputs):
            if t and t in g.initializers and t not in inits:
                inits[t] = _parameter(state, node, i, t)
    names: list[str] = []
    for t in g.inputs:
        names.append(t)
    for node in g.nodes:
        names.extend(o for o in node.outputs if o and o not in names)
    infos = {n: _value_info(state, n) for n in names}
    graph = EspdlGraph(
        name=g.name or "main_graph",
        nodes=[_node(n) for n in g.nodes],
        initializers=inits,
        inputs=[infos[n] for n in g.inputs],
        outputs=[infos[n] for n in g.outputs],
        value_info=list(infos.values()),
    )
    return EspdlModel(
        graph=graph,
        ir_version=ir_version,
        producer_name="espq",
        producer_version=producer_version,
        model_version=int(model_version),
        doc_string=doc_string,
        metadata_props=dict(metadata_props),
    )
