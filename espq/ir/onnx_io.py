"""Conversion between ONNX ``ModelProto`` and :class:`espq.ir.Graph`."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from espq.errors import ModelLoadError
from espq.ir.graph import Graph, Node, TensorInfo


def _attr_value(attr: onnx.AttributeProto) -> Any:
    t = attr.type
    A = onnx.AttributeProto
    if t == A.INT:
        return int(attr.i)
    if t == A.FLOAT:
        return float(attr.f)
    if t == A.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if t == A.INTS:
        return [int(v) for v in attr.ints]
    if t == A.FLOATS:
        return [float(v) for v in attr.floats]
    if t == A.STRINGS:
        return [s.decode("utf-8", errors="replace") for s in attr.strings]
    if t == A.TENSOR:
        return numpy_helper.to_array(attr.t)
    # GRAPH / SPARSE_TENSOR / TYPE_PROTO...: kept as the raw proto
    return attr


def _dtype_of(elem_type: int) -> np.dtype:
    if elem_type == 0:
        return np.dtype(np.float32)
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _shape_of(vi: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        return None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        else:
            return None
    return tuple(dims)


def _initializer_array(t: onnx.TensorProto) -> np.ndarray:
    """The initializer's values; ModelLoadError naming it when its data disagrees with its dims or dtype."""
    try:
        return numpy_helper.to_array(t)
    except (ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(
            f"initializer '{t.name}' (dims {list(t.dims)}, data_type {t.data_type}) cannot be read: {exc}; "
            "the model file is corrupt (re-export it)"
        ) from None


def graph_from_onnx(model: onnx.ModelProto) -> Graph:
    """Build a :class:`Graph` from ``model`` (the proto is not modified)."""
    g = model.graph
    opset = 0
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    inits = {t.name: _initializer_array(t) for t in g.initializer}
    values: dict[str, TensorInfo] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        values[vi.name] = TensorInfo(_dtype_of(vi.type.tensor_type.elem_type), _shape_of(vi))
    nodes = []
    used_names: set[str] = set()
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        base, k = name, 1
        while name in used_names:  # stable unique names
            name = f"{base}_{k}"
            k += 1
        used_names.add(name)
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        nodes.append(Node(name, n.op_type, list(n.input), list(n.output), attrs, n.domain))
    inputs = [vi.name for vi in g.input if vi.name not in inits]
    outputs = [vi.name for vi in g.output]
    meta = {p.key: p.value for p in model.metadata_props}
    return Graph(nodes, inits, values, inputs, outputs, g.name or "main_graph", opset or 18, meta)


def _make_attr(key: str, value: Any) -> onnx.AttributeProto:
    if isinstance(value, onnx.AttributeProto):
        return value
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, (list, tuple)) and len(value) == 0:
        return helper.make_attribute(key, [], attr_type=onnx.AttributeProto.INTS)
    if isinstance(value, (np.integer,)):
        value = int(value)
    if isinstance(value, (np.floating,)):
        value = float(value)
    return helper.make_attribute(key, value)


def _value_info(name: str, info: TensorInfo | None) -> onnx.ValueInfoProto:
    if info is None:
        return helper.make_empty_tensor_value_info(name)
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(info.dtype))
    return helper.make_tensor_value_info(name, elem, None if info.shape is None else list(info.shape))


def graph_to_onnx(graph: Graph, ir_version: int = 8) -> onnx.ModelProto:
    """Convert ``graph`` to an ONNX ``ModelProto`` (opset ``graph.opset``)."""
    try:
        nodes = [
            helper.make_node(
                n.op_type,
                n.inputs,
                n.outputs,
                name=n.name,
                domain=n.domain or None,
                **{},
            )
            for n in graph.nodes
        ]
        for proto, n in zip(nodes, graph.nodes):
            proto.attribute.extend(_make_attr(k, v) for k, v in sorted(n.attrs.items()))
    except Exception as exc:  # pragma: no cover - defensive
        raise ModelLoadError(f"cannot convert graph '{graph.name}' to ONNX: {exc}") from exc
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in graph.initializers.items()]
    outputs_set = set(graph.outputs)
    inputs_set = set(graph.inputs)
    value_info = [
        _value_info(k, v)
        for k, v in graph.values.items()
        if k not in outputs_set and k not in inputs_set and v.shape is not None
    ]
    g = helper.make_graph(
        nodes,
        graph.name,
        [_value_info(i, graph.values.get(i)) for i in graph.inputs],
        [_value_info(o, graph.values.get(o)) for o in graph.outputs],
        initializer=inits,
        value_info=value_info,
    )
    domains = {n.domain for n in graph.nodes if n.domain and n.domain != "ai.onnx"}
    opsets = [helper.make_opsetid("", graph.opset)]
    opsets += [helper.make_opsetid(d, 1) for d in sorted(domains)]
    model = helper.make_model(g, opset_imports=opsets, producer_name="espq")
    model.ir_version = ir_version
    for k, v in graph.metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model
