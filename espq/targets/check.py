"""Pre-flight capability check: can every node of a canonicalised graph run on the target?

:func:`check_model` classifies each node as

* ``"quantized"`` (runs with ``quant_type`` S8 or S16),
* ``"float"`` (runs in F32, the exporter puts Quantize/Dequantize around it), or
* ``"unsupported"`` (with the reasons and a suggested fix for each),

and raises one :class:`~espq.errors.UnsupportedOpError` listing *all* unsupported nodes.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from espq.errors import ConfigError, UnsupportedOpError
from espq.ir.graph import Graph, Node
from espq.targets.base import Issue, OpSpec, QuantType, Target
from espq.targets.ops_table import (
    CANONICALISE_FIX,
    CANONICALISED_AWAY,
    CONSTANT_FOLD_FIX,
    GENERIC_FIX,
    SHAPE_OPS,
    UNSUPPORTED_FIXES,
)
from espq.targets.registry import get_target

QUANTIZED, FLOAT, UNSUPPORTED = "quantized", "float", "unsupported"
Override = int | str  # 8 | 16 | "float"


@dataclass(frozen=True)
class NodeCapability:
    """The verdict for one node."""

    name: str
    op_type: str
    status: str  # "quantized" | "float" | "unsupported"
    quant_type: QuantType | None  # S8/S16 when quantized, F32 when float, None when unsupported
    per_channel: bool = False  # weight quantized per output channel on this target
    float_output: bool = False  # quantized op whose output is float32 (Softmax/LogSoftmax)
    issues: tuple[Issue, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "op_type": self.op_type,
            "status": self.status,
            "quant_type": None if self.quant_type is None else self.quant_type.value,
            "per_channel": self.per_channel,
            "float_output": self.float_output,
            "issues": [{"reason": i.reason, "fix": i.fix} for i in self.issues],
            "notes": list(self.notes),
        }


@dataclass
class CapabilityReport:
    """All node verdicts for one target and default bit width."""

    target: Target
    bits: int
    nodes: list[NodeCapability] = field(default_factory=list)

    def with_status(self, status: str) -> list[NodeCapability]:
        """The nodes whose status is ``status`` (``"quantized"``, ``"float"`` or ``"unsupported"``)."""
        return [n for n in self.nodes if n.status == status]

    @property
    def unsupported(self) -> list[NodeCapability]:
        return self.with_status(UNSUPPORTED)

    @property
    def ok(self) -> bool:
        """True when no node is unsupported."""
        return not self.unsupported

    def node(self, name: str) -> NodeCapability:
        """The verdict for node ``name`` (KeyError if absent)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        """``{"quantized": .., "float": .., "unsupported": .., "S8": .., "S16": ..}``."""
        c = Counter(n.status for n in self.nodes)
        q = Counter(n.quant_type.value for n in self.with_status(QUANTIZED) if n.quant_type is not None)
        return {
            QUANTIZED: c[QUANTIZED],
            FLOAT: c[FLOAT],
            UNSUPPORTED: c[UNSUPPORTED],
            "S8": q["S8"],
            "S16": q["S16"],
        }

    def unsupported_message(self) -> str:
        """One line per issue of every unsupported node: name, op type, reason, fix."""
        lines = [f"{len(self.unsupported)} node(s) cannot run on {self.target.name} ({self.bits}-bit):"]
        for n in self.unsupported:
            for issue in n.issues:
                lines.append(f"  - node {n.name!r} ({n.op_type}): {issue.reason}. Fix: {issue.fix}.")
        return "\n".join(lines)

    def summary(self) -> str:
        """A short human-readable report: counts, float nodes, unsupported nodes, notes per op type."""
        c = self.counts()
        lines = [
            f"{self.target.name} ({self.target.description}), default {self.bits}-bit: "
            f"{len(self.nodes)} nodes, "
            f"{c[QUANTIZED]} quantized (S8 {c['S8']}, S16 {c['S16']}), {c[FLOAT]} float, "
            f"{c[UNSUPPORTED]} unsupported"
        ]
        floats = self.with_status(FLOAT)
        if floats:
            lines.append("float nodes:")
            lines += [f"  - {n.name} ({n.op_type}){': ' + n.notes[0] if n.notes else ''}" for n in floats]
        if self.unsupported:
            lines.append(self.unsupported_message())
        per_op: dict[tuple[str, str], int] = Counter(
            (n.op_type, note) for n in self.nodes if n.status != FLOAT for note in n.notes
        )
        if per_op:
            lines.append("notes:")
            lines += [f"  - {op} (x{k}): {note}" for (op, note), k in per_op.items()]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "bits": self.bits,
            "counts": self.counts(),
            "nodes": [n.to_dict() for n in self.nodes],
        }


def _is_static_node(node: Node, static: set[str]) -> bool:
    """Whether ``node``'s outputs depend only on shapes and constants."""
    inputs = [i for i in node.inputs if i]
    if node.op_type in SHAPE_OPS or node.op_type == "Constant":
        return True
    return bool(inputs) and all(i in static for i in inputs)


def _static_tensors(graph: Graph) -> set[str]:
    """Tensors whose value depends only on shapes and constants (foldable before deployment)."""
    static = set(graph.initializers)
    for node in graph.nodes:
        if _is_static_node(node, static):
            static.update(o for o in node.outputs if o)
    return static


def _non_espdl_issue(node: Node, static: set[str]) -> Issue:
    op = node.op_type
    if op in CANONICALISED_AWAY:
        return Issue(f"{op} {CANONICALISED_AWAY[op]}; the graph was not canonicalised", CANONICALISE_FIX)
    if _is_static_node(node, static):
        return Issue(
            f"{op} is not an ESP-DL operator; its value depends only on shapes/constants", CONSTANT_FOLD_FIX
        )
    return Issue(f"{op} is not an ESP-DL operator", UNSUPPORTED_FIXES.get(op, GENERIC_FIX))


def _param_issues(node: Node, spec: OpSpec, graph: Graph, static: set[str]) -> list[Issue]:
    issues = []
    for idx in spec.param_inputs:
        name = node.inputs[idx] if len(node.inputs) > idx else ""
        if name and name not in graph.initializers:
            fix = (
                CONSTANT_FOLD_FIX
                if name in static
                else "make it a constant; ESP-DL cannot compute it at run time"
            )
            issues.append(
                Issue(f"input {idx} ({name!r}) must be a constant: ESP-DL reads it as a parameter", fix)
            )
    return issues


def _check_node(
    node: Node, graph: Graph, target: Target, request: Override, overridden: bool, static: set[str]
) -> NodeCapability:
    spec = target.ops.get(node.op_type)
    if spec is None:
        return NodeCapability(
            node.name, node.op_type, UNSUPPORTED, None, issues=(_non_espdl_issue(node, static),)
        )
    if _is_static_node(node, static):
        issue = Issue(
            f"{node.op_type} computes a constant (all its inputs are shapes/constants)", CONSTANT_FOLD_FIX
        )
        return NodeCapability(node.name, node.op_type, UNSUPPORTED, None, issues=(issue,))
    issues = _param_issues(node, spec, graph, static)
    issues += [i for rule in spec.rules if (i := rule(node, graph)) is not None]
    if request == "float":
        qt = QuantType.F32
        if qt not in spec.quant_types:
            issues.append(
                Issue(
                    f"{node.op_type} has no float32 kernel in ESP-DL",
                    "remove the 'float' override for this node",
                )
            )
    else:
        qt = QuantType.from_bits(int(request))
        if spec.default_float and not overridden:
            qt = QuantType.F32
        elif qt not in spec.quant_types:
            issues.append(
                Issue(f"{node.op_type} has no {qt.value} kernel in ESP-DL", "use another bit width")
            )
    if issues:
        return NodeCapability(node.name, node.op_type, UNSUPPORTED, None, issues=tuple(issues))
    notes = spec.notes_for(target.family, qt)
    if qt is QuantType.F32:
        why = (
            "float by override"
            if overridden
            else f"kept in float by default, as ESP-PPQ does for {node.op_type}; override with 8 or 16"
        )
        return NodeCapability(node.name, node.op_type, FLOAT, qt, notes=(why, *notes))
    return NodeCapability(
        node.name,
        node.op_type,
        QUANTIZED,
        qt,
        per_channel=target.is_per_channel(node.op_type),
        float_output=spec.float_output,
        notes=notes,
    )


def _validate_overrides(graph: Graph, overrides: Mapping[str, Override]) -> None:
    names = {n.name for n in graph.nodes}
    unknown = [k for k in overrides if k not in names]
    if unknown:
        hints = {k: difflib.get_close_matches(k, names, n=1) for k in unknown}
        listed = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ConfigError(f"overrides name unknown node(s): {listed}; use names from graph.nodes")
    bad = {k: v for k, v in overrides.items() if v not in (8, 16, "float") or isinstance(v, bool)}
    if bad:
        raise ConfigError(f"invalid override value(s) {bad}; each must be 8, 16 or 'float'")


def check_model(
    graph: Graph,
    target: str | Target,
    bits: int = 8,
    overrides: Mapping[str, Override] | None = None,
    strict: bool = True,
) -> CapabilityReport:
    """Classify every node of the canonicalised ``graph`` for ``target`` at default width ``bits``.

    ``graph`` must be an :class:`~espq.ir.graph.Graph`; :func:`espq.check_model` also accepts anything
    :func:`espq.load` accepts and loads it first.

    ``overrides`` maps node names to 8, 16 or ``"float"``; unknown names or values raise ConfigError.
    With ``strict`` (default) any unsupported node raises :class:`UnsupportedOpError` listing all of them,
    with the report in its ``.report`` attribute; otherwise the report is returned as is.
    """
    if not isinstance(graph, Graph):
        raise ConfigError(
            f"espq.targets.check_model needs a loaded Graph, got {type(graph).__name__}; "
            "call espq.check_model(model, target) to load a path, ONNX, torch or Keras model first"
        )
    tgt = get_target(target)
    if bits not in (8, 16) or isinstance(bits, bool):
        raise ConfigError(f"bits must be 8 or 16, got {bits!r}")
    overrides = dict(overrides or {})
    _validate_overrides(graph, overrides)
    static = _static_tensors(graph)
    report = CapabilityReport(tgt, bits)
    for node in graph.nodes:
        request = overrides.get(node.name, bits)
        report.nodes.append(_check_node(node, graph, tgt, request, node.name in overrides, static))
    if strict and not report.ok:
        err = UnsupportedOpError(report.unsupported_message())
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report
