"""Encode an :class:`~espq.espdl.model.EspdlModel` as a FlatBuffer payload (esp_dl_facts.md §1.4, §9;
esp_ppq_facts.md §4.3, Appendix C).

The encoder replays the call sequence of ESP-PPQ's ``helper.py`` on the Python ``flatbuffers``
Builder (same object creation order, same field order inside each table, scalars equal to their
default omitted, attributes sorted by name, strings in ``s``, DimensionValue ``dim_type`` written
explicitly, ``raw_data`` as 16-byte-aligned AlignedBytes zero-padded to 16 bytes, graph input/output
ValueInfos shared with ``value_info``), so re-encoding a file ESP-PPQ wrote reproduces it byte for
byte when the graph's ``creation_order`` (recorded by the reader) is available.
"""

from __future__ import annotations

import struct
from collections import Counter, defaultdict

import flatbuffers
import numpy as np

from espq.errors import EspdlFormatError
from espq.espdl import schema as S
from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo

AT = S.AttributeType


def _attr_type(name: str, value, recorded: int | None) -> int:
    """AttributeType for a Python value (``recorded`` wins when it is consistent)."""
    if isinstance(value, (bool, np.bool_)):
        return AT.INT
    if isinstance(value, (int, np.integer)):
        return AT.FLOAT if recorded == AT.FLOAT else AT.INT  # e.g. alpha = 1 set on a FLOAT attribute
    if isinstance(value, (float, np.floating)):
        return AT.FLOAT
    if isinstance(value, (str, bytes)):
        return AT.STRING
    if isinstance(value, EspdlTensor):
        return AT.TENSOR
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if not items:
            if recorded in (AT.INTS, AT.FLOATS, AT.STRINGS, AT.TENSORS):
                return recorded
            return AT.INTS
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in items):
            return AT.FLOATS if recorded == AT.FLOATS else AT.INTS
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in items):
            return AT.FLOATS
        if all(isinstance(v, str) for v in items):
            return AT.STRINGS
        if all(isinstance(v, EspdlTensor) for v in items):
            return AT.TENSORS
    raise EspdlFormatError(
        f"attribute '{name}' has a value of type {type(value).__name__} that .espdl cannot store; "
        "use int, float, str, a list of one of those, or an EspdlTensor"
    )


class _Builder(flatbuffers.Builder):
    """``flatbuffers.Builder`` with an explicit vtable de-duplication rule.

    flatbuffers >= 23 re-uses a vtable only when the field offsets *and* the object size match;
    flatbuffers 2.0 (used for older Espressif files) ignores the object size. Both are valid
    FlatBuffers; ``legacy_vtables`` picks the old rule so such files re-encode byte for byte.
    """

    def __init__(self, legacy_vtables: bool):
        super().__init__(1024)
        self.legacy_vtables = legacy_vtables
        self.known_vtables: dict[tuple, int] = {}

    def WriteVtable(self):  # noqa: N802 - flatbuffers API name
        self.PrependSOffsetTRelative(0)
        obj = self.Offset()
        fields = list(self.current_vtable)
        while fields and fields[-1] == 0:  # trailing absent fields are trimmed
            fields.pop()
        rel = [obj - f if f else 0 for f in fields]
        size = obj - self.objectEnd
        key = tuple(rel) if self.legacy_vtables else (*rel, size)
        found = self.known_vtables.get(key)
        if found is None:
            for r in reversed(rel):
                self.PrependVOffsetT(r)
            self.PrependVOffsetT(size)
            self.PrependVOffsetT(2 * (len(rel) + 2))
            # computed after the prepends: they may grow (and re-base) the buffer
            struct.pack_into("<i", self.Bytes, len(self.Bytes) - obj, self.Offset() - obj)
            self.known_vtables[key] = self.Offset()
        else:
            self.head = len(self.Bytes) - obj
            struct.pack_into("<i", self.Bytes, self.head, found - obj)
        self.current_vtable = None
        return obj


class _Encoder:
    def __init__(self, legacy_vtables: bool = False) -> None:
        self.b = _Builder(legacy_vtables)

    # -- primitives ---------------------------------------------------------------------------
    def string(self, s: str) -> int:
        return self.b.CreateString(s)

    def offsets(self, offs: list[int]) -> int:
        self.b.StartVector(4, len(offs), 4)
        for o in reversed(offs):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def array(self, values, dtype: str) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype=dtype).reshape(-1))

    def aligned_bytes(self, data: bytes) -> int:
        """[AlignedBytes] vector: 16-byte structs, 16-byte aligned (same bytes as prepending structs)."""
        b = self.b
        b.StartVector(16, len(data) // 16, 16)
        b.head = b.head - len(data)
        b.Bytes[b.head : b.head + len(data)] = data
        return b.EndVector()

    def _uoff(self, slot: int, off: int | None) -> None:
        if off is not None:
            self.b.PrependUOffsetTRelativeSlot(slot, off, 0)

    # -- tables ---------------------------------------------------------------------------------
    def tensor(self, t: EspdlTensor) -> int:
        T = S.Tensor
        name = self.string(t.name)
        dims = self.array(t.dims, "<i8")
        exps = self.array(t.exponents, "<i8")
        doc = self.string(t.doc_string) if t.doc_string else None
        data = None
        if t.data_field == "raw_data":
            pad = -len(t.raw) % 16
            padding = t.raw_padding if len(t.raw_padding) == pad else b"\0" * pad
            data, slot = self.aligned_bytes(t.raw + padding), T.RAW_DATA
        elif t.data_field in S.TENSOR_TYPED_FIELDS:
            slot, dt = S.TENSOR_TYPED_FIELDS[t.data_field]
            data = self.b.CreateNumpyVector(np.frombuffer(t.raw, dtype=dt))
        elif t.data_field != "none":
            raise EspdlFormatError(f"tensor '{t.name}': unknown data_field '{t.data_field}'")
        b = self.b
        b.StartObject(T.NUM_FIELDS)
        b.PrependInt32Slot(T.DATA_TYPE, int(t.data_type), 0)
        self._uoff(T.NAME, name)
        self._uoff(T.DOC_STRING, doc)
        if data is not None:
            self._uoff(slot, data)
        self._uoff(T.DIMS, dims)
        self._uoff(T.EXPONENTS, exps)
        return b.EndObject()

    def attribute(self, name: str, value, recorded: int | None) -> int:
        A = S.Attribute
        kind = _attr_type(name, value, recorded)
        key = self.string(name)
        ref = None
        if kind == AT.STRING:
            ref = self.b.CreateByteVector(value if isinstance(value, bytes) else value.encode("utf-8"))
        elif kind == AT.TENSOR:
            ref = self.tensor(value)
        elif kind == AT.INTS:
            ref = self.array([int(v) for v in value], "<i8")
        elif kind == AT.FLOATS:
            ref = self.array([float(v) for v in value], "<f4")
        elif kind == AT.STRINGS:
            ref = self.offsets([self.string(s) for s in value])
        elif kind == AT.TENSORS:
            ref = self.offsets([self.tensor(t) for t in value])
        b = self.b
        b.StartObject(A.NUM_FIELDS)
        self._uoff(A.NAME, key)
        if kind == AT.INT:
            b.Prep(8, 0)
            b.PrependInt64(int(value))
            b.PrependStructSlot(A.I, b.Offset(), 0)
        elif kind == AT.FLOAT:
            b.Prep(4, 0)
            b.PrependFloat32(float(value))
            b.PrependStructSlot(A.F, b.Offset(), 0)
        else:
            slot = {
                AT.STRING: A.S,
                AT.TENSOR: A.T,
                AT.INTS: A.INTS,
                AT.FLOATS: A.FLOATS,
                AT.STRINGS: A.STRINGS,
                AT.TENSORS: A.TENSORS,
            }[kind]
            self._uoff(slot, ref)
        b.PrependInt32Slot(A.ATTR_TYPE, int(kind), 0)
        return b.EndObject()

    def node(self, n: EspdlNode) -> int:
        N = S.Node
        op_type = self.string(n.op_type)
        inputs = self.offsets([self.string(s) for s in n.inputs])
        outputs = self.offsets([self.string(s) for s in n.outputs])
        name = self.string(n.name) if n.name else None
        doc = self.string(n.doc_string) if n.doc_string else None
        domain = self.string(n.domain) if n.domain else None
        attrs = None
        if n.attributes:
            attrs = self.offsets(
                [self.attribute(k, n.attributes[k], n.attr_types.get(k)) for k in sorted(n.attributes)]
            )
        b = self.b
        b.StartObject(N.NUM_FIELDS)
        self._uoff(N.OP_TYPE, op_type)
        self._uoff(N.INPUT, inputs)
        self._uoff(N.OUTPUT, outputs)
        self._uoff(N.NAME, name)
        self._uoff(N.DOC_STRING, doc)
        self._uoff(N.DOMAIN, domain)
        self._uoff(N.ATTRIBUTE, attrs)
        return b.EndObject()

    def _type_info(self, v: EspdlValueInfo) -> int:
        b = self.b
        shape = None
        if v.shape is not None:
            values = []
            for d in v.shape:
                param = self.string(d) if isinstance(d, str) else None
                b.StartObject(S.DimensionValue.NUM_FIELDS)
                if isinstance(d, (int, np.integer)):
                    b.PrependInt8Slot(S.DimensionValue.DIM_TYPE, S.DimensionValueType.VALUE, 0)
                    b.PrependInt64Slot(S.DimensionValue.DIM_VALUE, int(d), 0)
                elif param is not None:
                    b.PrependInt8Slot(S.DimensionValue.DIM_TYPE, S.DimensionValueType.PARAM, 0)
                    self._uoff(S.DimensionValue.DIM_PARAM, param)
                values.append(b.EndObject())
            dims = []
            for dv in values:
                b.StartObject(S.Dimension.NUM_FIELDS)
                self._uoff(S.Dimension.VALUE, dv)
                dims.append(b.EndObject())
            vec = self.offsets(dims)
            b.StartObject(S.TensorShape.NUM_FIELDS)
            self._uoff(S.TensorShape.DIM, vec)
            shape = b.EndObject()
        b.StartObject(S.TensorTypeAndShape.NUM_FIELDS)
        self._uoff(S.TensorTypeAndShape.SHAPE, shape)
        b.PrependInt32Slot(S.TensorTypeAndShape.ELEM_TYPE, int(v.elem_type), 0)
        tts = b.EndObject()
        b.StartObject(S.TypeInfo.NUM_FIELDS)
        b.PrependUint8Slot(S.TypeInfo.VALUE_TYPE, S.TYPE_INFO_TENSOR_TYPE, 0)
        self._uoff(S.TypeInfo.VALUE, tts)
        return b.EndObject()

    def value_info(self, v: EspdlValueInfo) -> int:
        V = S.ValueInfo
        name = self.string(v.name)
        doc = self.string(v.doc_string) if v.doc_string else None
        type_info = self._type_info(v)
        exps = self.array(v.exponents, "<i8")
        b = self.b
        b.StartObject(V.NUM_FIELDS)
        self._uoff(V.NAME, name)
        self._uoff(V.DOC_STRING, doc)
        self._uoff(V.VALUE_INFO_TYPE, type_info)
        self._uoff(V.EXPONENTS, exps)
        return b.EndObject()

    # -- graph / model ------------------------------------------------------------------------
    def graph(self, g: EspdlGraph) -> int:
        vi_by_name: dict[str, EspdlValueInfo] = {}
        for v in g.value_info:
            vi_by_name.setdefault(v.name, v)

        def shared(v: EspdlValueInfo) -> bool:
            return vi_by_name.get(v.name) == v

        objects: dict[tuple[str, str], list] = defaultdict(list)
        for kind, items in (
            ("node", g.nodes),
            ("initializer", list(g.initializers.values())),
            ("value_info", g.value_info),
            ("input", [v for v in g.inputs if not shared(v)]),
            ("output", [v for v in g.outputs if not shared(v)]),
            ("test_input", list(g.test_inputs.values())),
            ("test_output", list(g.test_outputs.values())),
        ):
            for obj in items:
                objects[(kind, obj.name)].append(obj)
        order = g.creation_order
        expected = Counter({k: len(v) for k, v in objects.items()})
        if not order or Counter(order) != expected:  # fresh or edited graph: a fixed default order
            order = [key for key, objs in objects.items() for _ in objs]
        offsets: dict[int, int] = {}  # id(object) -> offset
        queues = {k: list(v) for k, v in objects.items()}
        for key in order:
            obj = queues[key].pop(0)
            kind = key[0]
            if kind == "node":
                offsets[id(obj)] = self.node(obj)
            elif kind in ("initializer", "test_input", "test_output"):
                offsets[id(obj)] = self.tensor(obj)
            else:
                offsets[id(obj)] = self.value_info(obj)

        def io(v: EspdlValueInfo) -> int:
            return offsets[id(vi_by_name[v.name])] if shared(v) else offsets[id(v)]

        G = S.Graph
        name = self.string(g.name)
        init = self.offsets([offsets[id(t)] for t in g.initializers.values()])
        vinfo = self.offsets([offsets[id(v)] for v in g.value_info])
        t_in = self.offsets([offsets[id(t)] for t in g.test_inputs.values()])
        t_out = self.offsets([offsets[id(t)] for t in g.test_outputs.values()])
        nodes = self.offsets([offsets[id(n)] for n in g.nodes])
        inputs = self.offsets([io(v) for v in g.inputs])
        outputs = self.offsets([io(v) for v in g.outputs])
        doc = self.string(g.doc_string) if g.doc_string else None
        b = self.b
        b.StartObject(G.NUM_FIELDS)
        for slot, off in (
            (G.INITIALIZER, init),
            (G.VALUE_INFO, vinfo),
            (G.TEST_INPUTS_VALUE, t_in),
            (G.TEST_OUTPUTS_VALUE, t_out),
            (G.NODE, nodes),
            (G.NAME, name),
            (G.INPUT, inputs),
            (G.OUTPUT, outputs),
            (G.DOC_STRING, doc),
        ):
            self._uoff(slot, off)
        return b.EndObject()

    def model(self, m: EspdlModel) -> bytes:
        M = S.Model
        graph = self.graph(m.graph)
        b = self.b
        meta = []
        for k, v in m.metadata_props.items():
            ko, vo = self.string(k), self.string(v)
            b.StartObject(S.StringStringEntry.NUM_FIELDS)
            self._uoff(S.StringStringEntry.KEY, ko)
            self._uoff(S.StringStringEntry.VALUE, vo)
            meta.append(b.EndObject())
        opsets = []
        for domain, version in m.opset_import:
            do = self.string(domain) if domain else None
            b.StartObject(S.OperatorSetId.NUM_FIELDS)
            self._uoff(S.OperatorSetId.DOMAIN, do)
            b.PrependInt64Slot(S.OperatorSetId.VERSION, int(version), 0)
            opsets.append(b.EndObject())
        opset_vec = self.offsets(opsets)
        strs = {
            slot: self.string(s) if s else None
            for slot, s in (
                (M.PRODUCER_NAME, m.producer_name),
                (M.PRODUCER_VERSION, m.producer_version),
                (M.DOMAIN, m.domain),
                (M.DOC_STRING, m.doc_string),
            )
        }
        meta_vec = self.offsets(meta) if meta else None
        b.StartObject(M.NUM_FIELDS)
        self._uoff(M.GRAPH, graph)
        self._uoff(M.OPSET_IMPORT, opset_vec)
        b.PrependInt32Slot(M.IR_VERSION, int(m.ir_version), 0)
        self._uoff(M.PRODUCER_NAME, strs[M.PRODUCER_NAME])
        self._uoff(M.PRODUCER_VERSION, strs[M.PRODUCER_VERSION])
        self._uoff(M.DOMAIN, strs[M.DOMAIN])
        b.PrependInt64Slot(M.MODEL_VERSION, int(m.model_version), 0)
        self._uoff(M.DOC_STRING, strs[M.DOC_STRING])
        self._uoff(M.METADATA_PROPS, meta_vec)
        root = b.EndObject()
        b.Finish(root)
        return bytes(b.Output())


def encode_payload(model: EspdlModel) -> bytes:
    """The FlatBuffer payload (no EDL header) of ``model``; its length is a multiple of 16."""
    try:
        return _Encoder(model.legacy_vtables).model(model)
    except EspdlFormatError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError, struct.error) as exc:
        raise EspdlFormatError(f"cannot encode model '{model.graph.name}': {exc}") from exc
