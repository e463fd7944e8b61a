"""The `<stem>.info` side file: ESP-PPQ's human-readable dump of a `.espdl` model.

Reproduces ``esp_ppq.parser.espdl.helper.printable_graph(..., print_initializer_value=True,
print_value_info=True, print_test_value=True)`` (esp_ppq_facts.md §4.12) from an :class:`EspdlModel`, so that
the text for a file ESP-PPQ wrote equals the `.info` ESP-PPQ wrote beside it:

* model properties and ``metadata_props``; the graph header with the graph inputs and the initializers;
* one line per node, attributes sorted, floats with 15 significant digits, strings quoted;
* every initializer with shape, exponents, doc string (as a Python bytes repr) and its full raw array
  **including the zero padding** to 16 bytes (numpy repr, no summarisation);
* the value infos and the test input/output values in the same formats.
"""

from __future__ import annotations

import sys

import numpy as np

from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.schema import NUMPY_DTYPES, TENSOR_TYPED_FIELDS, AttributeType, TensorDataType


def _dtype_name(code: int) -> str:
    try:
        return TensorDataType(code).name
    except ValueError:
        return ""  # ESP-PPQ's get_class_attribute_name finds no member


def _sanitize(s: str | bytes) -> str:
    """ESP-PPQ's ``_sanitize_str``: decode, cut to 64 characters plus a length note."""
    text = s.decode("utf-8", errors="ignore") if isinstance(s, bytes) else s
    return text if len(text) < 64 else text[:64] + f"...<+len={len(text) - 64}>"


def _attr_type(node: EspdlNode, key: str, value: object) -> int:
    code = node.attr_types.get(key)
    if code is not None:
        return code
    if isinstance(value, bool | int):
        return AttributeType.INT
    if isinstance(value, float):
        return AttributeType.FLOAT
    if isinstance(value, str | bytes):
        return AttributeType.STRING
    if isinstance(value, EspdlTensor):
        return AttributeType.TENSOR
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, EspdlTensor):
            return AttributeType.TENSORS
        if isinstance(first, str | bytes):
            return AttributeType.STRINGS
        if all(isinstance(v, int) for v in value):
            return AttributeType.INTS
        return AttributeType.FLOATS
    return AttributeType.INTS


def _attr_text(node: EspdlNode, key: str, value: object) -> str:
    code = _attr_type(node, key, value)
    if code == AttributeType.INT:
        text = str(int(value))  # type: ignore[arg-type]
    elif code == AttributeType.FLOAT:
        text = f"{float(value):.15g}"  # type: ignore[arg-type]
    elif code == AttributeType.STRING:
        text = repr(_sanitize(value))  # type: ignore[arg-type]
    elif code == AttributeType.TENSOR:
        text = "<Tensor>" if value.dims else "<Scalar Tensor>"  # type: ignore[union-attr]
    elif code == AttributeType.FLOATS:
        text = "[" + ", ".join(f"{float(v):.15g}" for v in value) + "]"  # type: ignore[union-attr]
    elif code == AttributeType.INTS:
        text = "[" + ", ".join(str(int(v)) for v in value) + "]"  # type: ignore[union-attr]
    elif code == AttributeType.STRINGS:
        text = str([_sanitize(v) for v in value])  # type: ignore[union-attr]
    elif code == AttributeType.TENSORS:
        text = "[<Tensor>, ...]"
    else:
        text = "<Unknown>"
    return f"{key} = {text}"


def _node_text(node: EspdlNode, prefix: str) -> str:
    parts = []
    if node.outputs:
        parts += [", ".join(f"%{o}" for o in node.outputs), "="]
    inputs = ", ".join(f"%{i}" for i in node.inputs)
    if node.attributes:
        attrs = ", ".join(sorted(_attr_text(node, k, v) for k, v in node.attributes.items()))
        parts.append(f"{node.op_type}[{attrs}]({inputs})")
    else:
        parts.append(f"{node.op_type}({inputs})")
    return prefix + " ".join(parts)


def _dim_text(d: int | str | None) -> str:
    if d is None:
        return "?"
    if isinstance(d, str):
        return str(d.encode())  # ESP-PPQ prints the DimParam bytes object
    return str(d)


def value_info_text(v: EspdlValueInfo) -> str:
    """``%name[DTYPE, 1x32x32x3], exponents: [-6]`` (ESP-PPQ ``printable_value_info``)."""
    t = _dtype_name(v.elem_type)
    if v.shape is not None:
        t += ", " + "x".join(_dim_text(d) for d in v.shape) if v.shape else ", scalar"
    s = f"%{v.name}[{t}]"
    if v.exponents:
        s += f", exponents: {list(v.exponents)!r}"
    return s


def _tensor_header(t: EspdlTensor) -> str:
    dims = ", " + "x".join(str(d) for d in t.dims) if t.dims else ", scalar"
    return f"%{t.name}[{_dtype_name(t.data_type)}{dims}]"


def stored_elements(t: EspdlTensor) -> np.ndarray:
    """The raw_data elements as the file stores them: the data plus its zero padding to 16 bytes."""
    pad = -len(t.raw) % 16
    padding = t.raw_padding if len(t.raw_padding) == pad else b"\0" * pad
    return np.frombuffer(t.raw + padding, dtype=NUMPY_DTYPES[t.data_type])


def _int_array_repr(a: np.ndarray) -> str:
    """numpy's ``repr`` of a 1-D integer array (default print options, no summarisation), built in one
    pass: numpy's own formatter takes ~10 µs per element, minutes for a MobileNet's weights."""
    width = max(len(str(int(a.max()))), len(str(int(a.min()))))
    words = [f"{v:>{width}d}" for v in a.tolist()]
    # linewidth 75, minus the "," suffix, minus room for the separator / closing bracket
    prefix, indent, limit = "array(", " " * 7, 73
    lines, line = [], indent
    last = len(words) - 1
    for i, word in enumerate(words):
        if len(line) + len(word) > limit and len(line) > len(indent):
            lines.append(line.rstrip())
            line = indent
        line += word if i == last else word + ", "
    lines.append(line)
    body = "\n".join(lines)
    text = prefix + "[" + body[len(indent) :] + "],"
    typeless = a.dtype == np.dtype(np.int_)
    if typeless:
        return text[:-1] + ")"
    dtype_str = f"dtype={a.dtype.name})"
    last_len = len(text) - (text.rfind("\n") + 1)
    spacer = "\n" + " " * len(prefix) if last_len + len(dtype_str) + 1 > 75 else " "
    return text + spacer + dtype_str


def array_repr(a: np.ndarray) -> str:
    """``repr(a)`` with the whole array printed (ESP-PPQ prints every element)."""
    if a.ndim == 1 and a.size and np.issubdtype(a.dtype, np.integer):
        return _int_array_repr(a)
    with np.printoptions(threshold=sys.maxsize):
        return repr(a)


def tensor_value_text(t: EspdlTensor) -> str:
    """One ``initializers value`` / ``test ... value`` entry (ESP-PPQ ``printable_tensor_value``)."""
    s = f"%{t.name}, shape: {list(t.dims)!r}, exponents: {list(t.exponents)!r}, "
    if t.doc_string:
        s += f"docString: {t.doc_string.encode()!r}, "
    if t.data_field == "raw_data":
        s += f"\nvalue: {array_repr(stored_elements(t))}"
    elif t.data_field in TENSOR_TYPED_FIELDS:
        s += f"value: {np.frombuffer(t.raw, dtype=TENSOR_TYPED_FIELDS[t.data_field][1]).tolist()!r}"
    return s


def _header(g: EspdlGraph) -> list[str]:
    lines: list[str] = []
    header = ["graph", g.name]
    inits = g.initializers
    if g.inputs:
        header.append("(")
        plain = [value_info_text(v) for v in g.inputs if v.name not in inits]
        with_init = [value_info_text(v) for v in g.inputs if v.name in inits]
        if plain:
            lines.append(" ".join(header))
            header = []
            lines += ["  " + x for x in plain]
        header.append(")")
        if with_init:
            header.append("optional inputs with matching initializers (")
            lines.append(" ".join(header))
            header = []
            lines += ["  " + x for x in with_init]
            header.append(")")
        if len(with_init) < len(inits):
            names = {v.name for v in g.inputs}
            header.append("initializers (")
            lines.append(" ".join(header))
            header = []
            lines += ["  " + _tensor_header(t) for n, t in inits.items() if n not in names]
            header.append(")")
    header.append("{")
    lines.append(" ".join(header))
    return lines


def info_text(model: EspdlModel) -> str:
    """The `<stem>.info` text of ``model`` (no trailing newline, like ESP-PPQ's file)."""
    g = model.graph
    props = "".join(f"{k}: {v}\n" for k, v in model.metadata_props.items())
    content = ["model properties:\nmetadata_props:\n" + props + "\n"]
    content += _header(g)
    content += [_node_text(n, "  ") for n in g.nodes]
    content.append(
        "  " + " ".join(["return"] + ([", ".join(f"%{v.name}" for v in g.outputs)] if g.outputs else []))
    )
    content.append("}")
    content.append(
        "\n\ninitializers value:\n" + "\n".join(tensor_value_text(t) for t in g.initializers.values())
    )
    content.append("\n\nvalues info:\n" + "\n".join(value_info_text(v) for v in g.value_info))
    content.append(
        "\n\ntest inputs value:\n" + "\n".join(tensor_value_text(t) for t in g.test_inputs.values())
    )
    content.append(
        "\n\ntest outputs value:\n" + "\n".join(tensor_value_text(t) for t in g.test_outputs.values())
    )
    return "\n".join(content)


__all__ = ["info_text", "stored_elements", "tensor_value_text", "value_info_text"]
