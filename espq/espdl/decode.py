"""Decode a `.espdl` FlatBuffer payload into :class:`~espq.espdl.model.EspdlModel`.

Every structural problem raises :class:`~espq.errors.EspdlFormatError` with the byte offset
(see :mod:`espq.espdl.fbs`). Table positions are used to recover the order in which the original
builder created the graph's top-level objects (a FlatBuffer is built back to front, so objects
created first sit at higher offsets); the writer replays it for byte-identical output.
"""

from __future__ import annotations

from espq.errors import EspdlFormatError
from espq.espdl import schema as S
from espq.espdl.fbs import FbsBuffer, Table
from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo

#: Largest |exponent| a file may store. A value is code * 2^exponent; ESP-DL shifts by exponent
#: differences in 32/64-bit integers, so beyond 64 no kernel computes anything meaningful (int16
#: activations need |e| <= ~40 for any float32 range). Wider ones mean a corrupt or hostile file.
MAX_ABS_EXPONENT = 64


def _exponents(t: Table, slot: int, what: str) -> list[int]:
    arr = t.array(slot, "exponents", "<i8")
    exps = [] if arr is None else [int(e) for e in arr]
    bad = [e for e in exps if abs(e) > MAX_ABS_EXPONENT]
    if bad:
        raise t.buf.error(
            t.pos,
            f"{what} has exponent {bad[0]}, outside [-{MAX_ABS_EXPONENT}, {MAX_ABS_EXPONENT}]; "
            "the file is corrupt (re-export it)",
        )
    return exps


def _reject(t: Table, slot: int, name: str) -> None:
    if t.has(slot):
        raise t.buf.error(
            t.pos, f"{t.what} uses field '{name}', which espq does not support (ESP-PPQ never writes it)"
        )


def decode_tensor(t: Table) -> EspdlTensor:
    """A Tensor table → EspdlTensor (raw bytes unpadded, padding kept)."""
    T = S.Tensor
    for slot, name in ((T.STRING_DATA, "string_data"), (T.EXTERNAL_DATA, "external_data")):
        _reject(t, slot, name)
    if t.i32(T.DATA_LOCATION) != 0:
        raise t.buf.error(t.pos, f"{t.what} has external data_location, which espq does not support")
    name = t.string(T.NAME, "name") or ""
    dims_arr = t.array(T.DIMS, "dims", "<i8")
    dims = [] if dims_arr is None else [int(d) for d in dims_arr]
    if any(d < 0 for d in dims):
        raise t.buf.error(t.pos, f"tensor '{name}' has negative dims {dims}")
    exps = _exponents(t, T.EXPONENTS, f"tensor '{name}'")
    tensor = EspdlTensor(
        name=name,
        dims=dims,
        data_type=t.i32(T.DATA_TYPE),
        raw=b"",
        exponents=exps,
        doc_string=t.string(T.DOC_STRING, "doc_string") or "",
    )
    raw = t.bytes_(T.RAW_DATA, "raw_data", 16)
    if raw is not None:
        if tensor.data_type not in S.NUMPY_DTYPES:
            raise t.buf.error(
                t.pos, f"tensor '{name}' stores raw_data with unsupported data_type {tensor.data_type}"
            )
        need = tensor.numel * tensor.dtype.itemsize
        if need > len(raw):
            raise t.buf.error(
                t.pos, f"tensor '{name}' dims {dims} need {need} bytes but raw_data holds only {len(raw)}"
            )
        tensor.raw, tensor.raw_padding = raw[:need], raw[need:]
        return tensor
    for field_name, (slot, dt) in S.TENSOR_TYPED_FIELDS.items():
        arr = t.bytes_(slot, field_name, dt.itemsize)
        if arr is not None:
            if len(arr) // dt.itemsize != tensor.numel:
                raise t.buf.error(t.pos, f"tensor '{name}' {field_name} length does not match dims {dims}")
            if tensor.data_type not in S.NUMPY_DTYPES:
                raise t.buf.error(t.pos, f"tensor '{name}' has unsupported data_type {tensor.data_type}")
            tensor.raw, tensor.data_field = arr, field_name
            return tensor
    if tensor.numel != 0:
        raise t.buf.error(t.pos, f"tensor '{name}' with dims {dims} has no data vector")
    tensor.data_field = "none"
    return tensor


def _decode_value_info(t: Table) -> EspdlValueInfo:
    V = S.ValueInfo
    name = t.string(V.NAME, "name") or ""
    vi = EspdlValueInfo(
        name=name,
        elem_type=0,
        shape=None,
        exponents=_exponents(t, V.EXPONENTS, f"value_info '{name}'"),
        doc_string=t.string(V.DOC_STRING, "doc_string") or "",
    )
    ti = t.table(V.VALUE_INFO_TYPE, "value_info_type")
    if ti is None:
        raise t.buf.error(t.pos, f"value_info '{name}' has no value_info_type")
    _reject(ti, S.TypeInfo.DENOTATION, "denotation")
    if ti.u8(S.TypeInfo.VALUE_TYPE) != S.TYPE_INFO_TENSOR_TYPE:
        raise ti.buf.error(ti.pos, f"value_info '{name}' is not a tensor_type (union tag {ti.u8(0)})")
    tts = ti.table(S.TypeInfo.VALUE, "tensor_type")
    if tts is None:
        raise ti.buf.error(ti.pos, f"value_info '{name}' has a tensor_type tag but no value")
    vi.elem_type = tts.i32(S.TensorTypeAndShape.ELEM_TYPE)
    shape_t = tts.table(S.TensorTypeAndShape.SHAPE, "shape")
    if shape_t is not None:
        vi.shape = []
        for dim in shape_t.tables(S.TensorShape.DIM, "dim") or []:
            _reject(dim, S.Dimension.DENOTATION, "denotation")
            dv = dim.table(S.Dimension.VALUE, "value")
            kind = S.DimensionValueType.UNKNOWN if dv is None else dv.i8(S.DimensionValue.DIM_TYPE)
            if kind == S.DimensionValueType.VALUE:
                size = dv.i64(S.DimensionValue.DIM_VALUE)
                if size < 0:
                    raise dv.buf.error(dv.pos, f"value_info '{name}' has negative dim {size}")
                vi.shape.append(size)
            elif kind == S.DimensionValueType.PARAM:
                vi.shape.append(dv.string(S.DimensionValue.DIM_PARAM, "dim_param") or "")
            elif kind == S.DimensionValueType.UNKNOWN:
                vi.shape.append(None)
            else:
                raise dv.buf.error(dv.pos, f"value_info '{name}' has unknown dim_type {kind}")
    return vi


def _decode_attribute(t: Table):
    A = S.Attribute
    for slot, fname in ((A.REF_ATTR_NAME, "ref_attr_name"), (A.G, "g"), (A.TP, "tp"), (A.GRAPHS, "graphs")):
        _reject(t, slot, fname)
    _reject(t, A.TYPE_PROTOS, "type_protos")
    name = t.string(A.NAME, "name") or ""
    kind = t.i32(A.ATTR_TYPE)
    AT = S.AttributeType
    if kind == AT.INT:
        value = t.i64(A.I)
    elif kind == AT.FLOAT:
        value = t.f32(A.F)
    elif kind == AT.STRING:
        raw = t.bytes_(A.S, "s") or b""
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw
    elif kind == AT.INTS:
        arr = t.array(A.INTS, "ints", "<i8")
        value = [] if arr is None else [int(x) for x in arr]
    elif kind == AT.FLOATS:
        arr = t.array(A.FLOATS, "floats", "<f4")
        value = [] if arr is None else [float(x) for x in arr]
    elif kind == AT.STRINGS:
        value = t.strings(A.STRINGS, "strings") or []
    elif kind == AT.TENSOR:
        sub = t.table(A.T, "t")
        if sub is None:
            raise t.buf.error(t.pos, f"attribute '{name}' is TENSOR but has no tensor")
        value = decode_tensor(sub)
    elif kind == AT.TENSORS:
        value = [decode_tensor(x) for x in t.tables(A.TENSORS, "tensors") or []]
    else:
        raise t.buf.error(t.pos, f"attribute '{name}' has unsupported attr_type {kind}")
    return name, int(kind), value, t.string(A.DOC_STRING, "doc_string") or ""


def _decode_node(t: Table) -> EspdlNode:
    N = S.Node
    node = EspdlNode(
        name=t.string(N.NAME, "name") or "",
        op_type=t.string(N.OP_TYPE, "op_type") or "",
        inputs=t.strings(N.INPUT, "input") or [],
        outputs=t.strings(N.OUTPUT, "output") or [],
        domain=t.string(N.DOMAIN, "domain") or "",
        doc_string=t.string(N.DOC_STRING, "doc_string") or "",
    )
    for a in t.tables(N.ATTRIBUTE, "attribute") or []:
        name, kind, value, doc = _decode_attribute(a)
        if doc:
            raise a.buf.error(
                a.pos, f"attribute '{name}' of node '{node.name}' has a doc_string (unsupported)"
            )
        if name in node.attributes:
            raise a.buf.error(a.pos, f"node '{node.name}' has attribute '{name}' twice")
        node.attributes[name] = value
        node.attr_types[name] = kind
    return node


def _named(tensors: list[tuple[Table, EspdlTensor]], what: str, buf: FbsBuffer) -> dict[str, EspdlTensor]:
    out: dict[str, EspdlTensor] = {}
    for tab, ten in tensors:
        if ten.name in out:
            raise buf.error(tab.pos, f"two {what} tensors are named '{ten.name}'")
        out[ten.name] = ten
    return out


def _decode_graph(g: Table) -> EspdlGraph:
    G = S.Graph
    _reject(g, G.QUANTIZATION_ANNOTATION, "quantization_annotation")
    positions: list[tuple[int, str, str]] = []

    def tensors(slot: int, fname: str, kind: str) -> list[tuple[Table, EspdlTensor]]:
        out = []
        for tab in g.tables(slot, fname) or []:
            ten = decode_tensor(tab)
            positions.append((tab.pos, kind, ten.name))
            out.append((tab, ten))
        return out

    nodes = []
    for tab in g.tables(G.NODE, "node") or []:
        node = _decode_node(tab)
        positions.append((tab.pos, "node", node.name))
        nodes.append(node)
    graph = EspdlGraph(
        name=g.string(G.NAME, "name") or "",
        nodes=nodes,
        initializers=_named(tensors(G.INITIALIZER, "initializer", "initializer"), "initializer", g.buf),
        test_inputs=_named(
            tensors(G.TEST_INPUTS_VALUE, "test_inputs_value", "test_input"), "test input", g.buf
        ),
        test_outputs=_named(
            tensors(G.TEST_OUTPUTS_VALUE, "test_outputs_value", "test_output"), "test output", g.buf
        ),
        doc_string=g.string(G.DOC_STRING, "doc_string") or "",
    )
    vi_pos: dict[int, str] = {}
    for tab in g.tables(G.VALUE_INFO, "value_info") or []:
        vi = _decode_value_info(tab)
        graph.value_info.append(vi)
        vi_pos[tab.pos] = vi.name
        positions.append((tab.pos, "value_info", vi.name))
    for slot, fname, target, kind in (
        (G.INPUT, "input", graph.inputs, "input"),
        (G.OUTPUT, "output", graph.outputs, "output"),
    ):
        for tab in g.tables(slot, fname) or []:
            vi = _decode_value_info(tab)
            target.append(vi)
            if vi_pos.get(tab.pos) != vi.name:  # not shared with a value_info table
                positions.append((tab.pos, kind, vi.name))
    positions.sort(key=lambda p: -p[0])
    graph.creation_order = [(kind, name) for _, kind, name in positions]
    return graph


def decode_payload(
    payload: bytes, base: int = 0, source: str = "<bytes>", fmt: str = "EDL2", mode: int = 0
) -> EspdlModel:
    """Decode one FlatBuffer payload (the bytes after the EDL header) into an EspdlModel."""
    buf = FbsBuffer(payload, base, source)
    try:
        m = buf.root()
        M = S.Model
        _reject(m, M.FUNCTIONS, "functions")
        graph_t = m.table(M.GRAPH, "graph")
        if graph_t is None:
            raise buf.error(m.pos, "the Model has no graph")
        opsets = []
        for op in m.tables(M.OPSET_IMPORT, "opset_import") or []:
            opsets.append(
                (op.string(S.OperatorSetId.DOMAIN, "domain") or "", op.i64(S.OperatorSetId.VERSION))
            )
        meta: dict[str, str] = {}
        for e in m.tables(M.METADATA_PROPS, "metadata_props") or []:
            meta[e.string(S.StringStringEntry.KEY, "key") or ""] = (
                e.string(S.StringStringEntry.VALUE, "value") or ""
            )
        graph = _decode_graph(graph_t)
        return EspdlModel(
            graph=graph,
            ir_version=m.i32(M.IR_VERSION),
            opset_import=opsets,
            producer_name=m.string(M.PRODUCER_NAME, "producer_name") or "",
            producer_version=m.string(M.PRODUCER_VERSION, "producer_version") or "",
            domain=m.string(M.DOMAIN, "domain") or "",
            model_version=m.i64(M.MODEL_VERSION),
            doc_string=m.string(M.DOC_STRING, "doc_string") or "",
            metadata_props=meta,
            format=fmt,
            mode=mode,
            legacy_vtables=buf.legacy_vtables(),
        )
    except EspdlFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reader's contract: only EspdlFormatError escapes
        raise EspdlFormatError(f"{source}: corrupt FlatBuffer payload (file offset {base}+): {exc}") from None
