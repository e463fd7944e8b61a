"""In-memory description of a `.espdl` file's content (esp_dl_facts.md §1.4, §2).

The dataclasses mirror the FlatBuffer tables field by field so that ``read`` → ``write_bytes``
reproduces the file. Only the tables ESP-PPQ writes are modelled (no Function, TensorAnnotation,
sub-graph attributes); the reader rejects files that use the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from espq.errors import EspdlFormatError
from espq.espdl import layout as _layout
from espq.espdl.schema import NUMPY_DTYPES, TENSOR_TYPED_FIELDS, TensorDataType

LAYOUT_PREFIX = "layout ==> "


@dataclass
class EspdlTensor:
    """A Tensor table: initializer, LUT, test value or tensor attribute.

    ``raw`` holds the element bytes exactly as stored, without the zero padding that rounds
    ``raw_data`` up to 16 bytes; ``raw_padding`` keeps the stored padding bytes (normally zeros)
    so that a rewrite is byte-identical. ``data_field`` names the vector the data came from:
    ``"raw_data"`` (what ESP-PPQ writes for every non-empty tensor), one of the typed vectors
    (``"int32_data"``, ``"int64_data"``, ``"float_data"``, ``"double_data"``, ``"uint64_data"``),
    in which case ``raw`` holds that vector's body in the vector's own element type, or
    ``"none"`` (an empty tensor stored without a data vector).
    """

    name: str
    dims: list[int]
    data_type: int
    raw: bytes
    exponents: list[int] = field(default_factory=list)
    doc_string: str = ""
    data_field: str = "raw_data"
    raw_padding: bytes = field(default=b"", compare=False, repr=False)

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def dtype(self) -> np.dtype:
        """numpy dtype of ``data_type`` (EspdlFormatError for STRING/UNDEFINED/unknown codes)."""
        try:
            return NUMPY_DTYPES[self.data_type]
        except KeyError:
            raise EspdlFormatError(
                f"tensor '{self.name}': data_type {self.data_type} has no numeric representation "
                "(expected one of the TensorDataType codes 1-7, 9-13)"
            ) from None

    @property
    def layout(self) -> str | None:
        """The layout annotation from ``doc_string`` (``"layout ==> (N/16)HWC16"`` → ``"(N/16)HWC16"``)."""
        doc = self.doc_string or ""
        return doc[len(LAYOUT_PREFIX) :].strip() if doc.startswith(LAYOUT_PREFIX) else None

    def values(self) -> np.ndarray:
        """The stored elements, flattened, in stored (target layout) order, dtype of ``data_type``."""
        if self.data_field == "raw_data":
            return np.frombuffer(self.raw, dtype=self.dtype).copy()
        if self.data_field == "none":  # an empty tensor stored without any data vector
            return np.zeros(0, dtype=self.dtype)
        src = TENSOR_TYPED_FIELDS[self.data_field][1]
        return np.frombuffer(self.raw, dtype=src).astype(self.dtype)

    def to_original(self, op_type: str | None = None, depthwise: bool | None = None) -> np.ndarray:
        """The values in ONNX layout, undoing the target weight layouts of esp_dl_facts.md §2.5.

        See :func:`espq.espdl.layout.to_original` for the exact shapes returned.
        """
        return _layout.to_original(self.values(), self.dims, self.layout, op_type, depthwise, self.name)

    def dequantized(self) -> np.ndarray:
        """float64 values ``int * 2**exp`` in ONNX layout (``to_original()`` order and shape).

        One exponent = per tensor. Several exponents = per output channel (axis 0 of the result,
        in logical channel order as stored, esp_ppq_facts.md §4.5).
        """
        vals = self.to_original().astype(np.float64)
        exps = np.asarray(self.exponents or [0], dtype=np.float64)
        if exps.size == 1:
            return vals * 2.0 ** exps[0]
        if vals.ndim == 0 or vals.shape[0] != exps.size:
            raise EspdlFormatError(
                f"tensor '{self.name}': {exps.size} exponents do not match the {vals.shape[:1]} output "
                "channels of its ONNX-layout values; per-channel exponents need one per output channel"
            )
        return vals * (2.0**exps).reshape((-1,) + (1,) * (vals.ndim - 1))

    @staticmethod
    def from_array(
        name: str, array: np.ndarray, data_type: int, exponents: list[int], doc_string: str = ""
    ) -> EspdlTensor:
        """A raw_data tensor holding ``array`` flattened in C order (cast to ``data_type``)."""
        dt = NUMPY_DTYPES[data_type]
        arr = np.asarray(array)
        return EspdlTensor(
            name=name,
            dims=[int(d) for d in arr.shape],
            data_type=int(data_type),
            raw=np.ascontiguousarray(arr, dtype=dt).tobytes(),
            exponents=[int(e) for e in exponents],
            doc_string=doc_string,
        )


AttrValue = int | float | str | bytes | list | EspdlTensor


@dataclass
class EspdlNode:
    """A Node table. ``attributes`` maps name → value: int (INT), float (FLOAT), str (STRING, stored
    UTF-8 in ``s``), bytes (STRING that is not UTF-8), list[int] (INTS), list[float] (FLOATS),
    list[str] (STRINGS), EspdlTensor (TENSOR), list[EspdlTensor] (TENSORS). ``attr_types`` records the
    AttributeType code read from the file (needed for empty lists); the writer infers it otherwise.
    """

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict[str, AttrValue] = field(default_factory=dict)
    domain: str = ""
    doc_string: str = ""
    attr_types: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def attr(self, key: str, default=None):
        return self.attributes.get(key, default)


@dataclass
class EspdlValueInfo:
    """A ValueInfo with a tensor_type TypeInfo. ``shape`` is None when no TensorShape is stored;
    each dim is an int (VALUE), a str (PARAM) or None (UNKNOWN)."""

    name: str
    elem_type: int
    shape: list[int | str | None] | None
    exponents: list[int] = field(default_factory=list)
    doc_string: str = ""

    @property
    def exponent(self) -> int:
        """The exponent the runtime uses (first entry, 0 when none; esp_dl_facts.md §2.1)."""
        return self.exponents[0] if self.exponents else 0


@dataclass
class EspdlGraph:
    """A Graph table. ``creation_order`` (filled by the reader, ignored in comparisons) lists the
    top-level objects as ``(kind, name)`` in the order the original builder created them, so the
    writer can reproduce the file byte for byte; kinds are ``node``, ``initializer``,
    ``value_info``, ``input``, ``output``, ``test_input``, ``test_output``."""

    name: str
    nodes: list[EspdlNode] = field(default_factory=list)
    initializers: dict[str, EspdlTensor] = field(default_factory=dict)
    inputs: list[EspdlValueInfo] = field(default_factory=list)
    outputs: list[EspdlValueInfo] = field(default_factory=list)
    value_info: list[EspdlValueInfo] = field(default_factory=list)
    test_inputs: dict[str, EspdlTensor] = field(default_factory=dict)
    test_outputs: dict[str, EspdlTensor] = field(default_factory=dict)
    doc_string: str = ""
    creation_order: list[tuple[str, str]] | None = field(default=None, compare=False, repr=False)

    def node(self, name: str) -> EspdlNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named '{name}' in graph '{self.name}'")

    def consumers(self, tensor: str) -> list[EspdlNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def value(self, name: str) -> EspdlValueInfo | None:
        for v in self.value_info:
            if v.name == name:
                return v
        return None


@dataclass
class EspdlModel:
    """A Model table plus its container facts (``format`` "EDL1"/"EDL2", ``mode`` 0 plain / 1 AES
    as read; ``write_bytes`` encrypts only when given a key)."""

    graph: EspdlGraph
    ir_version: int = 0
    opset_import: list[tuple[str, int]] = field(default_factory=list)
    producer_name: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc_string: str = ""
    metadata_props: dict[str, str] = field(default_factory=dict)
    format: str = "EDL2"
    mode: int = 0
    #: vtable de-duplication rule of the builder that made the file (see espq.espdl.encode._Builder);
    #: set by the reader, False (flatbuffers >= 23 rule) for new models.
    legacy_vtables: bool = field(default=False, compare=False, repr=False)

    @property
    def target(self) -> str | None:
        """``metadata_props["target"]`` (e.g. "esp32p4", "esp32s3", "c"), None when absent."""
        return self.metadata_props.get("target")

    def original_weight(self, name: str) -> np.ndarray:
        """Initializer ``name`` in ONNX layout, using its consumer node to resolve the layout.

        Conv → [N, C/group, kH, kW] (or [N, C/group, kW] for Conv1d); Gemm → [N, C] (ONNX ``B``
        with transB = 1); MatMul → [..., C, N]; anything else → values reshaped to ``dims``.
        """
        t = self.graph.initializers[name]
        users = self.graph.consumers(name)
        if not users:
            return t.to_original()
        op = users[0]
        depthwise = None
        if op.op_type == "Conv":
            depthwise = int(op.attr("group", 1)) > 1
        return t.to_original(op.op_type, depthwise)


__all__ = [
    "EspdlGraph",
    "EspdlModel",
    "EspdlNode",
    "EspdlTensor",
    "EspdlValueInfo",
    "LAYOUT_PREFIX",
    "TensorDataType",
]
