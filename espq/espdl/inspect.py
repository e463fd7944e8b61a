"""Inspect and compare `.espdl` files: the logic behind ``espq inspect FILE [--json]`` and ``espq diff A B``.

* :func:`inspect_model` summarises a file as a JSON-friendly dict; :func:`format_inspect` renders it.
* :func:`diff_models` lists structural and numerical differences between two models.
* :func:`inspect_cli` / :func:`diff_cli` print results and return exit codes (never a traceback for a bad
  file).

Activation memory (esp_dl_facts.md §5.1): ESP-DL's greedy planner keeps each activation from its producer
to its last consumer (graph outputs never freed), sizes rounded up to 16 bytes, and lets "changed buffer"
ops (elementwise arithmetic, activations/LUTs, RequantizeLinear) overwrite an input that dies at the node,
and "unchanged buffer" ops (Reshape/Flatten/Squeeze/Unsqueeze/Identity) alias their input. We reproduce
those lifetimes and aliasing from the ValueInfo shapes (:func:`espq.targets.memory.activation_memory`)
and report ``activation_peak_bytes`` (largest sum of simultaneously live buffers: a lower bound of any
arena) and ``activation_arena_bytes`` (a greedy-by-size
first-fit offset plan over the same buffers, an estimate of the arena ESP-DL allocates; the exact ESP-DL
placement order is not documented, so the value may differ by fragmentation). Per-op scratch buffers are
not counted.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from typing import Any

from espq.errors import EspdlFormatError, EspqError
from espq.espdl.model import EspdlModel, EspdlValueInfo
from espq.espdl.schema import TensorDataType
from espq.espdl.validate import quant_type_of, violations
from espq.targets.cost import float_math_nodes
from espq.targets.infer import proven_target, target_candidates
from espq.targets.latency import estimate
from espq.targets.memory import activation_memory


def _load(source: EspdlModel | str | os.PathLike | bytes) -> tuple[EspdlModel, str | None]:
    from espq.espdl.files import read

    if isinstance(source, EspdlModel):
        return source, None
    path = None if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    return read(source), path


def printable(text: str) -> str:
    """``text`` safe for a terminal: every non-printable character (ESC, other control codes, newlines)
    is written as its Python escape (``\\x1b``, ``\\n``), as ``repr`` would; printable text is unchanged.

    Node and tensor names come from the file: a name with terminal escape codes must never reach the
    terminal raw.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def dtype_name(code: int) -> str:
    """The TensorDataType name of ``code`` (``"INT8"``...), or ``"TYPE<code>"`` when unknown."""
    try:
        return TensorDataType(code).name
    except ValueError:
        return f"TYPE{code}"


def _io(v: EspdlValueInfo) -> dict[str, Any]:
    return {"name": v.name, "shape": v.shape, "dtype": dtype_name(v.elem_type), "exponent": v.exponent}


def _latency(model: EspdlModel) -> dict[str, Any]:
    """Predicted single-core latency and peak memory (:func:`espq.targets.latency.estimate`)."""
    try:
        est = estimate(model)
    except EspqError as exc:  # e.g. an unknown metadata target
        none = dict.fromkeys(("latency_ms", "latency_target", "peak_memory_bytes"))
        return {**none, "latency_note": str(exc)}
    return {
        "latency_ms": None if math.isnan(est.ms) else round(est.ms, 3),
        "latency_target": est.target,
        "latency_note": est.note,
        "peak_memory_bytes": est.peak_memory_bytes,
    }


def inspect_model(source: EspdlModel | str | os.PathLike | bytes) -> dict[str, Any]:
    """A JSON-friendly summary of a `.espdl` model (a path, bytes or an :class:`EspdlModel`).

    Keys: ``file``, ``format``, ``graph_name``, ``ir_version``, ``model_version``, ``metadata``, ``target``
    (``metadata_props["target"]``, None when absent), ``inferred_target`` (the target the weights prove,
    :func:`espq.targets.infer.proven_target`; None when they fit several), ``target_candidates`` (the
    targets they fit), ``nodes`` ([{name, op_type, quant_type}]), ``inputs`` /
    ``outputs`` ([{name, shape, dtype, exponent}]), ``op_counts`` ([{op_type, quant_type, count}], most
    frequent first), ``num_initializers``, ``param_count`` (elements), ``param_bytes`` (data bytes without
    padding), ``param_bytes_aligned`` (each rounded up to 16 as stored), ``per_channel`` (any per-channel
    parameter), ``luts``, ``exponent_range`` ({activations: [min, max], parameters: [min, max]}),
    ``activation_peak_bytes``, ``activation_arena_bytes``, ``activation_buffers`` (module docstring),
    ``latency_ms`` / ``latency_target`` / ``latency_note`` / ``peak_memory_bytes`` (parameters + peak
    activations; :func:`espq.targets.latency.estimate`; ms None where the chip has no fitted model),
    ``float_math_nodes`` (integer activations the chip computes in float32: no ``LUT`` op / table;
    :func:`espq.targets.cost.float_math_nodes`), ``has_test_values``, ``test_inputs``, ``test_outputs``
    (names), ``violations`` (see
    :func:`espq.espdl.validate.violations`).
    """
    model, path = _load(source)
    g = model.graph
    inits = list(g.initializers.values())
    act_exps = [
        v.exponent for v in g.value_info if v.elem_type in (TensorDataType.INT8, TensorDataType.INT16)
    ]
    weights = {
        n.inputs[i]
        for n in g.nodes
        if n.op_type in ("Conv", "Gemm", "MatMul")
        for i in (1, 2)
        if i < len(n.inputs)
    }
    weights |= {n.attr("lut") for n in g.nodes if isinstance(n.attr("lut"), str)}
    par_exps = [e for name in weights if name in g.initializers for e in g.initializers[name].exponents]
    counts = Counter((n.op_type, quant_type_of(n) or str(n.attr("quant_type"))) for n in g.nodes)
    luts = {
        n.attr("lut") for n in g.nodes if isinstance(n.attr("lut"), str) and n.attr("lut") in g.initializers
    }
    return {
        "file": path,
        "format": model.format,
        "graph_name": g.name,
        "ir_version": model.ir_version,
        "model_version": model.model_version,
        "metadata": dict(model.metadata_props),
        "target": model.target,
        "inferred_target": _name(proven_target(model)),
        "target_candidates": [t.name for t in target_candidates(model)],
        "nodes": [
            {"name": n.name, "op_type": n.op_type, "quant_type": n.attr("quant_type")} for n in g.nodes
        ],
        "inputs": [_io(v) for v in g.inputs],
        "outputs": [_io(v) for v in g.outputs],
        "op_counts": [
            {"op_type": op, "quant_type": qt, "count": c}
            for (op, qt), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "num_initializers": len(inits),
        "param_count": sum(t.numel for t in inits),
        "param_bytes": sum(len(t.raw) for t in inits),
        "param_bytes_aligned": sum(-(-len(t.raw) // 16) * 16 for t in inits),
        "per_channel": any(len(t.exponents) > 1 for t in inits),
        "luts": len(luts),
        "exponent_range": {
            "activations": [min(act_exps), max(act_exps)] if act_exps else None,
            "parameters": [min(par_exps), max(par_exps)] if par_exps else None,
        },
        **activation_memory(model),
        **_latency(model),
        "float_math_nodes": float_math_nodes(model),
        "has_test_values": bool(g.test_inputs or g.test_outputs),
        "test_inputs": list(g.test_inputs),
        "test_outputs": list(g.test_outputs),
        "violations": violations(model),
    }


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    return lines + [fmt.format(*map(str, r)).rstrip() for r in rows]


def _kib(n: int) -> str:
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def _latency_line(d: dict[str, Any]) -> str:
    if d["latency_ms"] is None:
        return f"latency:     n/a ({d['latency_note']})"
    return (
        f"latency:     {d['latency_ms']:.1f} ms predicted on {d['latency_target']} (single core, model only; "
        "fitted on ESP-DL's published zoo latencies, bench/latency_fit.py)"
    )


def _float_math_lines(names: list[str]) -> list[str]:
    if not names:
        return []
    shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
    return [
        f"float math:  {len(names)} integer activation(s) computed in float32 on the chip (no table): "
        f"{shown} (an int16 Sigmoid/Tanh/Swish/... becomes a bit-exact LUT op with lut_optimization=True, "
        "int16_lut_step=32)"
    ]


def _name(target: Any) -> str | None:
    return None if target is None else target.name


def _target_line(d: dict[str, Any]) -> str:
    """The target line of a file without ``metadata_props["target"]``: what its weights prove, else
    "unknown" with the candidates (never a guess: a P4 file with per-tensor weights looks like an S3 one)."""
    if d["inferred_target"]:
        return f"{d['inferred_target']} (inferred from the weights; no metadata target)"
    cands = d.get("target_candidates") or []
    fit = f"the weights fit {' or '.join(cands)}" if cands else "no registered target fits the weights"
    return f"unknown (no metadata target; {fit}: pass --target)"


def format_inspect(d: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`inspect_model`'s dict: summary, I/O, op counts, nodes, violations."""
    target = d["target"] or _target_line(d)
    ar, pr = d["exponent_range"]["activations"], d["exponent_range"]["parameters"]
    lines = [
        f"file:        {d['file'] or '<in memory>'}",
        f"format:      {d['format']}  graph '{d['graph_name']}'  ir_version {d['ir_version']}",
        f"target:      {target}",
        f"metadata:    {d['metadata'] or '{}'}",
        f"nodes:       {len(d['nodes'])}",
        f"parameters:  {d['num_initializers']} tensors, {d['param_count']:,} values, "
        f"{_kib(d['param_bytes'])} ({_kib(d['param_bytes_aligned'])} aligned)",
        f"per-channel: {'yes' if d['per_channel'] else 'no'}   LUTs: {d['luts']}",
        f"exponents:   activations {ar}   parameters {pr}",
        f"activations: peak {_kib(d['activation_peak_bytes'])}, greedy arena "
        f"{_kib(d['activation_arena_bytes'])} over {d['activation_buffers']} buffers",
        _latency_line(d),
        f"peak memory: {_kib(d['peak_memory_bytes']) if d['peak_memory_bytes'] is not None else 'n/a'} "
        "(parameters + peak activations)",
        f"test values: {'yes' if d['has_test_values'] else 'no'}",
        *_float_math_lines(d["float_math_nodes"]),
        "",
    ]
    io_rows = [
        [kind, printable(v["name"]), v["dtype"], "x".join(map(str, v["shape"] or [])), v["exponent"]]
        for kind in ("inputs", "outputs")
        for v in d[kind]
    ]
    lines += _table(io_rows, ["", "name", "dtype", "shape", "exponent"]) + [""]
    lines += _table(
        [[printable(c["op_type"]), c["quant_type"], c["count"]] for c in d["op_counts"]],
        ["op", "quant", "count"],
    )
    lines += [""] + _table(
        [
            [i, printable(n["name"]), printable(n["op_type"]), n["quant_type"]]
            for i, n in enumerate(d["nodes"])
        ],
        ["#", "node", "op", "quant"],
    )
    if d["violations"]:
        lines += ["", f"{len(d['violations'])} validation problem(s):"] + [
            f"  - {v}" for v in d["violations"]
        ]
    else:
        lines += ["", "validation: ok"]
    return "\n".join(printable(line) for line in lines)  # names from the file never reach a terminal raw


# ---------------------------------------------------------------------------------------------- diff
# ----------------------------------------------------------------------------------------------- CLI
def read_for_cli(path: str | os.PathLike) -> EspdlModel | None:
    """The model at ``path``, or None after printing the one-line error (CLI helpers)."""
    from espq.espdl.files import read

    try:
        return read(path)
    except (EspdlFormatError, EspqError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def inspect_cli(path: str | os.PathLike, as_json: bool = False) -> int:
    """``espq inspect FILE [--json]``: print the summary; 0 on success, 2 when the file cannot be read or
    fails validation (:func:`espq.espdl.validate.require_valid`, one line on stderr)."""
    from espq.espdl.validate import require_valid

    model = read_for_cli(path)
    if model is None:
        return 2
    try:
        require_valid(model, what=f"'{path}'")
    except EspqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    d = inspect_model(model)
    d["file"] = str(path)
    print(json.dumps(d, indent=2) if as_json else format_inspect(d))
    return 0


__all__ = [
    "activation_memory",
    "format_inspect",
    "printable",
    "inspect_cli",
    "inspect_model",
]
