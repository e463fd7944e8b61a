"""Layerwise (cross-layer) equalization on the float graph, with ESP-PPQ's settings and meaning.

Rules (esp_ppq_facts.md §6, ``LayerwiseEqualizationPass``):

* Candidates are Conv and Gemm (MatMul is excluded, as in ESP-PPQ); ``interested_layers`` restricts the
  upstream candidates.
* From a candidate, the search goes downstream through pass-through ops (level 1: Relu, PRelu, LeakyRelu,
  MaxPool, GlobalMaxPool, AveragePool, GlobalAveragePool, Identity; level 2 adds Add and Sub) and stops at
  the first other op: those ops are the downstream group. The search then goes upstream from the
  downstream group the same way to find the upstream group; both searches repeat until neither grows
  (so every consumer of a rescaled tensor is accounted for). A pair is kept only if both groups are
  non-empty and made of Conv/Gemm only.
* Key values per channel of the shared dimension: max |upstream weight row| (and |bias| · bias_multiplier
  with ``including_bias``) and max |downstream weight column|. Scale ``s = sqrt(down / up)`` clamped to
  [0.1, 10], forced to 1 where ``up + down < value_threshold``. Upstream rows and biases are multiplied by
  ``s``, downstream input channels divided by ``s``. Every pair is re-equalized ``iterations`` times.

The transform keeps the float function exactly only through positively homogeneous ops, so some guards go
beyond ESP-PPQ: a pair is dropped when a rescaled tensor is a graph output, when an Add/Sub on the path has
a constant operand, or when a rescaled tensor reaches a Conv/Gemm through a non-data input. Clip (ReLU6) is
not homogeneous: it ends a search (the pair is dropped) unless ``clip_to_relu`` asks to replace every
``Clip(min=0)`` by ``Relu`` first, which changes the function and is the user's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from espq.errors import ConfigError
from espq.ir import Graph, Node

CANDIDATES = frozenset({"Conv", "Gemm"})
LEVEL1_PASS = frozenset(
    {"Relu", "MaxPool", "GlobalMaxPool", "PRelu", "AveragePool", "GlobalAveragePool", "LeakyRelu", "Identity"}
)
LEVEL2_PASS = LEVEL1_PASS | {"Add", "Sub"}
SCALE_MIN, SCALE_MAX = 0.1, 10.0


@dataclass
class EqualizationSetting:
    """ESP-PPQ's ``equalization_setting`` (same names and defaults) plus ``clip_to_relu``."""

    opt_level: int = 1
    iterations: int = 10
    value_threshold: float = 0.5
    including_bias: bool = False
    bias_multiplier: float = 0.5
    interested_layers: list[str] = field(default_factory=list)
    clip_to_relu: bool = False

    def validate(self) -> None:
        if self.opt_level not in (1, 2):
            raise ConfigError(f"equalization opt_level must be 1 or 2, got {self.opt_level!r}")
        if not isinstance(self.iterations, int) or self.iterations < 1:
            raise ConfigError(f"equalization iterations must be a positive integer, got {self.iterations!r}")
        if self.value_threshold < 0:
            raise ConfigError(f"equalization value_threshold must be >= 0, got {self.value_threshold!r}")


@dataclass
class EqualizationPair:
    """Upstream nodes (their output channels are scaled by s) and downstream nodes (inputs divided by s)."""

    upstream: list[str]
    downstream: list[str]


# ---------------------------------------------------------------------------- pair discovery
def _walk_down(graph: Graph, node: Node, passes: frozenset, inner: set, ends: set, bad: list) -> None:
    stack, seen = [t for t in node.outputs if t], set()
    while stack:
        t = stack.pop()
        if t in graph.outputs:
            bad.append(f"tensor '{t}' is a graph output")
        for c in graph.consumers(t):
            if c.op_type in passes and (c.inputs.index(t) == 0 or c.op_type in ("Add", "Sub")):
                if c.name not in seen:
                    seen.add(c.name)
                    inner.add(c.name)
                    stack.extend(o for o in c.outputs if o)
            else:
                ends.add(c.name)
                if c.op_type in CANDIDATES and c.inputs.index(t) != 0:
                    bad.append(f"'{t}' is a parameter input of '{c.name}'")


def _walk_up(graph: Graph, node: Node, passes: frozenset, inner: set, ups: set, bad: list) -> None:
    stack, seen = [node.inputs[0]] if node.inputs else [], set()
    while stack:
        t = stack.pop()
        if t in graph.initializers:
            bad.append(f"constant '{t}' enters the rescaled region")
            continue
        p = graph.producer(t)
        if p is None:
            bad.append(f"graph input '{t}' enters the rescaled region")
        elif p.op_type in passes:
            if p.name not in seen:
                seen.add(p.name)
                inner.add(p.name)
                stack.extend(p.inputs if p.op_type in ("Add", "Sub") else p.inputs[:1])
        else:
            ups.add(p.name)


def find_pairs(graph: Graph, setting: EqualizationSetting) -> list[EqualizationPair]:
    """Equalization pairs of ``graph`` by ESP-PPQ's discovery rules (module docstring)."""
    passes = LEVEL2_PASS if setting.opt_level >= 2 else LEVEL1_PASS
    interested = set(setting.interested_layers or ())
    visited: set[str] = set()
    pairs = []
    for node in graph.nodes:
        if node.op_type not in CANDIDATES or node.name in visited:
            continue
        if interested and node.name not in interested:
            continue
        ups, downs, inner, bad = {node.name}, set(), set(), []
        while True:
            size = (len(ups), len(downs), len(inner))
            for u in list(ups):
                _walk_down(graph, graph.node(u), passes, inner, downs, bad)
            for d in list(downs):
                _walk_up(graph, graph.node(d), passes, inner, ups, bad)
            if (len(ups), len(downs), len(inner)) == size:
                break
        members = [graph.node(n) for n in ups | downs]
        if bad or not downs or any(m.op_type not in CANDIDATES for m in members) or ups & visited:
            continue
        if ups & downs or not _channels_match(graph, ups, downs):
            continue
        visited |= ups
        order = {n.name: i for i, n in enumerate(graph.nodes)}
        pairs.append(EqualizationPair(sorted(ups, key=order.get), sorted(downs, key=order.get)))
    return pairs


def _channels_match(graph: Graph, ups: set, downs: set) -> bool:
    outs = {_up_rows(graph, graph.node(u)).shape[0] for u in ups}
    ins = {_down_columns(graph, graph.node(d)).shape[0] for d in downs}
    return len(outs) == 1 and outs == ins


# ---------------------------------------------------------------------------- weight views
def _weight(graph: Graph, node: Node) -> np.ndarray:
    if len(node.inputs) < 2 or node.inputs[1] not in graph.initializers:
        raise ConfigError(f"equalization: '{node.name}' has no constant weight")
    return np.asarray(graph.initializers[node.inputs[1]], dtype=np.float64)


def _up_rows(graph: Graph, node: Node) -> np.ndarray:
    """Weight as [out_channels, -1]."""
    w = _weight(graph, node)
    if node.op_type == "Gemm" and not node.attr("transB", 0):
        w = w.T
    return w.reshape(w.shape[0], -1)


def _down_columns(graph: Graph, node: Node) -> np.ndarray:
    """Weight as [in_channels, -1] (group-aware for Conv)."""
    w = _weight(graph, node)
    if node.op_type == "Gemm":
        return w.T if node.attr("transB", 0) else w
    g = int(node.attr("group", 1))
    o, i_per_g = w.shape[0], w.shape[1]
    w5 = w.reshape(g, o // g, i_per_g, -1)  # [group, out per group, in per group, k]
    return np.moveaxis(w5, 2, 1).reshape(g * i_per_g, -1)


def _scale_up(graph: Graph, node: Node, s: np.ndarray) -> None:
    w = graph.initializers[node.inputs[1]]
    if node.op_type == "Gemm" and not node.attr("transB", 0):
        new = w * s.reshape(1, -1)
    else:
        new = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    graph.initializers[node.inputs[1]] = new.astype(w.dtype)
    if len(node.inputs) > 2 and node.inputs[2]:
        b = graph.initializers[node.inputs[2]]
        if b.size != s.size:
            raise ConfigError(f"equalization: bias of '{node.name}' is not per channel (shape {b.shape})")
        graph.initializers[node.inputs[2]] = (b * s.reshape(b.shape)).astype(b.dtype)


def _scale_down(graph: Graph, node: Node, s: np.ndarray) -> None:
    w = graph.initializers[node.inputs[1]]
    if node.op_type == "Gemm":
        shape = (1, -1) if node.attr("transB", 0) else (-1, 1)
        graph.initializers[node.inputs[1]] = (w / s.reshape(shape)).astype(w.dtype)
        return
    g = int(node.attr("group", 1))
    o, i_per_g = w.shape[0], w.shape[1]
    w5 = w.reshape(g, o // g, i_per_g, -1) / s.reshape(g, 1, i_per_g, 1)
    graph.initializers[node.inputs[1]] = w5.reshape(w.shape).astype(w.dtype)


def _bias_values(graph: Graph, node: Node) -> np.ndarray | None:
    if len(node.inputs) > 2 and node.inputs[2]:
        return np.abs(np.asarray(graph.initializers[node.inputs[2]], dtype=np.float64)).reshape(-1)
    return None


def equalize_pair(graph: Graph, pair: EqualizationPair, setting: EqualizationSetting) -> np.ndarray:
    """One equalization step of ``pair`` (in place); returns the per-channel scale applied."""
    ups = [graph.node(n) for n in pair.upstream]
    downs = [graph.node(n) for n in pair.downstream]
    up = np.max([np.abs(_up_rows(graph, n)).max(axis=1) for n in ups], axis=0)
    if setting.including_bias:
        biases = [b for b in (_bias_values(graph, n) for n in ups) if b is not None]
        if biases:
            up = np.maximum(up, np.max(biases, axis=0) * setting.bias_multiplier)
    down = np.max([np.abs(_down_columns(graph, n)).max(axis=1) for n in downs], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(down / up)
    s = np.clip(np.nan_to_num(s, nan=1.0, posinf=SCALE_MAX), SCALE_MIN, SCALE_MAX)
    s[(up + down) < setting.value_threshold] = 1.0
    for n in ups:
        _scale_up(graph, n, s)
    for n in downs:
        _scale_down(graph, n, s)
    return s


def clip_to_relu(graph: Graph) -> list[str]:
    """Replace every ``Clip`` with lower bound 0 by ``Relu`` (changes the function); returns their names."""
    changed = []
    for node in graph.nodes:
        if node.op_type != "Clip":
            continue
        lo = node.attr("min")
        if lo is None and len(node.inputs) > 1 and node.inputs[1]:
            lo = graph.initializers.get(node.inputs[1])
        if lo is None or float(np.asarray(lo).reshape(-1)[0]) != 0.0:
            continue
        node.op_type, node.inputs, node.attrs = "Relu", node.inputs[:1], {}
        changed.append(node.name)
    if changed:
        graph.invalidate()
        graph.prune()
    return changed


def equalize(graph: Graph, setting: EqualizationSetting | None = None) -> list[EqualizationPair]:
    """Layerwise-equalize ``graph`` in place (float weights); returns the pairs found."""
    setting = setting or EqualizationSetting()
    setting.validate()
    if setting.clip_to_relu:
        clip_to_relu(graph)
    pairs = find_pairs(graph, setting)
    for _ in range(setting.iterations):
        for pair in pairs:
            equalize_pair(graph, pair, setting)
    return pairs


__all__ = [
    "EqualizationPair",
    "EqualizationSetting",
    "clip_to_relu",
    "equalize",
    "equalize_pair",
    "find_pairs",
]
