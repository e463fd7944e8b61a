"""Differences between two `.espdl` models, as readable lines: the one diff engine behind ``espq diff`` and
the exporter's comparison with reference files (:func:`espq.export.compare_models`)."""

from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np

from espq.errors import EspqError
from espq.espdl.inspect import dtype_name, printable, read_for_cli
from espq.espdl.model import EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo


def diff_tensor(what: str, a: EspdlTensor, b: EspdlTensor) -> list[str]:
    """Lines ``"<what>: ..."`` for each difference of two tensors: dims, dtype, layout, exponents, codes."""
    out = []
    if a.dims != b.dims:
        out.append(f"{what}: dims {a.dims} != {b.dims}")
    if a.data_type != b.data_type:
        out.append(f"{what}: dtype {dtype_name(a.data_type)} != {dtype_name(b.data_type)}")
    if a.doc_string != b.doc_string:
        out.append(f"{what}: layout {a.layout or a.doc_string!r} != {b.layout or b.doc_string!r}")
    if a.exponents != b.exponents:
        n = max(len(a.exponents), len(b.exponents))
        if len(a.exponents) == len(b.exponents):
            k = sum(x != y for x, y in zip(a.exponents, b.exponents))
            out.append(
                f"{what}: {k} of {n} exponents differ ({_short(a.exponents)} vs {_short(b.exponents)})"
            )
        else:
            out.append(f"{what}: exponents {_short(a.exponents)} != {_short(b.exponents)}")
    if a.dims == b.dims and a.data_type == b.data_type and a.raw != b.raw:
        try:
            va, vb = a.values(), b.values()
        except EspqError:
            out.append(f"{what}: data differs")
        else:
            if va.shape != vb.shape:
                out.append(f"{what}: data has {va.size} vs {vb.size} elements")
            else:
                d = np.abs(va.astype(np.float64) - vb.astype(np.float64))
                out.append(
                    f"{what}: {int(np.count_nonzero(d))} of {d.size} codes differ, max |delta| "
                    f"{float(d.max()):g}"
                )
    return out


def _short(xs: list) -> str:
    return repr(xs) if len(xs) <= 8 else f"[{', '.join(map(str, xs[:8]))}, ... ({len(xs)} values)]"


def _diff_named(kind: str, a: dict[str, Any], b: dict[str, Any], each) -> list[str]:
    out = [f"{kind} '{n}' only in A" for n in a if n not in b]
    out += [f"{kind} '{n}' only in B" for n in b if n not in a]
    for n in a:
        if n in b:
            out += each(f"{kind} '{n}'", a[n], b[n])
    return out


def diff_value_info(what: str, a: EspdlValueInfo, b: EspdlValueInfo) -> list[str]:
    """Lines ``"<what>: ..."`` for each difference of two activation ValueInfos: dtype, shape, exponents."""
    out = []
    if a.elem_type != b.elem_type:
        out.append(f"{what}: dtype {dtype_name(a.elem_type)} != {dtype_name(b.elem_type)}")
    if a.shape != b.shape:
        out.append(f"{what}: shape {a.shape} != {b.shape}")
    if a.exponents != b.exponents:
        out.append(f"{what}: exponents {a.exponents} != {b.exponents}")
    return out


def _attr_repr(v: Any) -> str:
    return f"<tensor {v.name} {v.dims}>" if isinstance(v, EspdlTensor) else repr(v)


def _diff_node(i: int, j: int, x: EspdlNode, y: EspdlNode) -> list[str]:
    where = f"node {i} '{x.name}'" + ("" if (i, x.name) == (j, y.name) else f" / B node {j} '{y.name}'")
    out = []
    if x.name != y.name:
        out.append(f"{where}: name {x.name!r} != {y.name!r}")
    if x.op_type != y.op_type:
        out.append(f"{where}: op {x.op_type} != {y.op_type}")
    if x.inputs != y.inputs:
        out.append(f"{where}: inputs {x.inputs} != {y.inputs}")
    if x.outputs != y.outputs:
        out.append(f"{where}: outputs {x.outputs} != {y.outputs}")
    for k in sorted(set(x.attributes) | set(y.attributes)):
        va, vb = x.attributes.get(k), y.attributes.get(k)
        if va != vb:
            out.append(f"{where}: attribute {k} {_attr_repr(va)} != {_attr_repr(vb)}")
    return out


def diff_models(a: EspdlModel, b: EspdlModel) -> list[str]:
    """Every difference between models ``a`` and ``b`` as readable lines (empty when equal).

    Compares model fields and metadata, graph inputs/outputs, the node sequence (op types, names,
    inputs/outputs, attributes), activation ValueInfos (dtype, shape, exponents), initializers (dims,
    dtype, layout, exponents, weight codes: how many differ and the max |delta|) and test values.
    """
    out: list[str] = []
    for field in ("format", "ir_version", "model_version", "producer_name", "domain", "doc_string"):
        if getattr(a, field) != getattr(b, field):
            out.append(f"model {field}: {getattr(a, field)!r} != {getattr(b, field)!r}")
    for k in sorted(set(a.metadata_props) | set(b.metadata_props)):
        va, vb = a.metadata_props.get(k), b.metadata_props.get(k)
        if va != vb:
            out.append(f"metadata '{k}': {va!r} != {vb!r}")
    ga, gb = a.graph, b.graph
    if ga.name != gb.name:
        out.append(f"graph name {ga.name!r} != {gb.name!r}")
    for kind in ("inputs", "outputs"):
        na, nb = [v.name for v in getattr(ga, kind)], [v.name for v in getattr(gb, kind)]
        if na != nb:
            out.append(f"graph {kind} {na} != {nb}")
    if len(ga.nodes) != len(gb.nodes):
        out.append(f"node count {len(ga.nodes)} != {len(gb.nodes)}")
    # align the node sequences by name, so an inserted/removed node does not shift every comparison
    names_a, names_b = [n.name for n in ga.nodes], [n.name for n in gb.nodes]
    matcher = difflib.SequenceMatcher(a=names_a, b=names_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for i, j in zip(range(i1, i2), range(j1, j2)):
                out += _diff_node(i, j, ga.nodes[i], gb.nodes[j])
            continue
        out += [f"node {i} '{ga.nodes[i].name}' ({ga.nodes[i].op_type}) only in A" for i in range(i1, i2)]
        out += [f"node {j} '{gb.nodes[j].name}' ({gb.nodes[j].op_type}) only in B" for j in range(j1, j2)]
    out += _diff_named(
        "value", {v.name: v for v in ga.value_info}, {v.name: v for v in gb.value_info}, diff_value_info
    )
    out += _diff_named("initializer", ga.initializers, gb.initializers, diff_tensor)
    out += _diff_named("test input", ga.test_inputs, gb.test_inputs, diff_tensor)
    out += _diff_named("test output", ga.test_outputs, gb.test_outputs, diff_tensor)
    return out


def diff_cli(a: str | os.PathLike, b: str | os.PathLike) -> int:
    """``espq diff A B``: print the differences; 0 equal, 1 different, 2 a file cannot be read."""
    ma, mb = read_for_cli(a), read_for_cli(b)
    if ma is None or mb is None:
        return 2
    diffs = diff_models(ma, mb)
    if not diffs:
        print(printable(f"no differences between {a} and {b}"))
        return 0
    print(printable(f"{len(diffs)} difference(s) between A={a} and B={b}:"))
    for line in diffs:  # names come from the files: escaped, never raw terminal codes
        print(f"  {printable(line)}")
    return 1


__all__ = ["diff_cli", "diff_models", "diff_tensor", "diff_value_info"]
