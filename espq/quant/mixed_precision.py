"""Automatic mixed precision: promote the fewest int8 layers to int16 that reach an output-error target.

1. Calibrate once: statistics of every activation tensor, so any int8/int16 mix gets its exponents
   without another calibration pass (int16 groups use the minmax observer, as ESP-PPQ does).
2. Rank the quantized computing ops by ESP-PPQ's layerwise error (graph-output noise when only that op is
   quantized, :func:`espq.analysis.analyse`).
   A layer is promoted together with the single-consumer chain of non-computing ops after it
   (:func:`followers`).
3. Greedy: at each step try the ``lookahead`` highest-ranked remaining ops, each alone and together with
   its neighbours (the computing ops on the other side of its input and of its output activation,
   :func:`neighbours`): an int8 activation that clips is only removed when its producer and its consumer
   are both int16, which no single promotion shows. Keep the candidate with the largest relative error
   reduction per promoted layer; stop when the error is at most ``max_error`` or the int16 budget is
   spent. ``strategy="top_k"`` instead promotes single ops in rank order without choosing (the blind
   baseline the bench compares against).

The error is the noise-to-signal power ratio of the graph outputs against the float model, per sample,
averaged (ESP-PPQ's "snr" metric). Latency is estimated from MACs with int16 ≈ 2× int8 per MAC (ESP-DL's
published per-layer figures); size counts weights at 1 or 2 bytes and biases at their stored width.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir import quant_rules as rules
from espq.ir.op_facts import COMPUTING_OPS
from espq.ir.spec import F32, S16, QuantPlan
from espq.quant import recipes
from espq.quant.bias_correction import keep_batches
from espq.quant.data import iter_feeds
from espq.quant.model import QuantizedModel
from espq.quant.quantize import (
    calibration_statistics,
    finish_plan,
    plan_skeleton,
    prepare_inputs,
)
from espq.quant.recipes import output_error
from espq.quant.setting import QuantSetting

INT16_COST_PER_MAC = 2.0
STRATEGIES = ("greedy", "top_k")


@dataclass
class AmpReport:
    """What :func:`auto_mixed_precision` chose and why."""

    int16_layers: list[str]
    base_error: float
    error: float
    max_error: float | None
    steps: list[tuple[str, float]] = field(default_factory=list)  # (promoted op, error after)
    ranking: list[tuple[str, float]] = field(default_factory=list)  # (op, layerwise error), worst first
    size_bytes: int = 0
    int8_size_bytes: int = 0
    relative_latency: float = 1.0  # MAC-weighted, all-int8 = 1.0
    evaluations: int = 0

    def summary(self) -> str:
        lines = [
            f"int16 layers ({len(self.int16_layers)}): {', '.join(self.int16_layers) or '-'}",
            f"graphwise output error: {self.base_error:.3e} (all int8) -> {self.error:.3e}"
            + (f" (target {self.max_error:.3e})" if self.max_error is not None else ""),
            f"size: {self.size_bytes / 1024:.1f} KiB (all int8: {self.int8_size_bytes / 1024:.1f} KiB); "
            f"relative latency ≈ {self.relative_latency:.3f} × all-int8 ({self.evaluations} evaluations)",
        ]
        lines += [f"  + {op}: error {err:.3e}" for op, err in self.steps]
        return "\n".join(lines)


class _Mixer:
    """Builds and scores quantized models for any set of int16 layers, from one calibration."""

    def __init__(
        self, graph: Graph, setting: QuantSetting, steps: recipes.Steps, target, stats, batches, evals
    ):
        self.graph, self.setting, self.steps, self.target = graph, setting, steps, target
        self.stats, self.batches, self.evals = stats, batches, evals
        self.reference = [self._float(f) for f in evals]
        self.evaluations = 0
        self._scores: dict[frozenset[str], tuple[float, QuantizedModel]] = {}

    def _float(self, feed: dict) -> dict[str, np.ndarray]:
        from espq.sim.float import run_float

        return run_float(self.graph, feed)

    def build(self, int16: Iterable[str]) -> QuantizedModel:
        setting = copy.deepcopy(self.setting)
        promoted = {n: 16 for op in int16 for n in followers(self.graph, op)}
        setting.precision = {**promoted, **setting.precision}
        graph = self.graph.copy()  # bias correction writes into the graph
        report, skeleton = plan_skeleton(graph, self.target, 8, setting)
        plan = finish_plan(skeleton, graph, self.stats, setting, self.steps, self.target, self.batches)
        return QuantizedModel(
            graph, plan, self.target, report, stats=self.stats, float_graph=self.graph, steps=self.steps
        )

    def error(self, qm: QuantizedModel) -> float:
        self.evaluations += 1
        errs = [output_error(qm.run(f), ref) for f, ref in zip(self.evals, self.reference, strict=True)]
        return float(np.mean(errs))

    def score(self, int16: Iterable[str]) -> tuple[float, QuantizedModel]:
        """(graphwise error, model) with the layers ``int16`` promoted; cached per layer set."""
        key = frozenset(int16)
        if key not in self._scores:
            qm = self.build(sorted(key))
            self._scores[key] = (self.error(qm), qm)
        return self._scores[key]


def followers(graph: Graph, op: str) -> list[str]:
    """``op`` and the single-consumer chain of non-computing ops after it (Relu, pooling, Add...): they
    are promoted with it so its int16 output is not rounded to int8 before the next computing op."""
    chain = [op]
    node = graph.node(op)
    while node.outputs and node.outputs[0] not in graph.outputs:
        consumers = graph.consumers(node.outputs[0])
        if len(consumers) != 1 or consumers[0].op_type in COMPUTING_OPS:
            break
        node = consumers[0]
        chain.append(node.name)
    return chain


def neighbours(graph: Graph, op: str) -> tuple[list[str], list[str]]:
    """The computing ops that exchange an activation with ``op``: (producers of its activation inputs,
    consumers of its output), each in graph order, looking through chains of one-input non-computing ops
    (Relu, Pad, pooling, Reshape...) but not through joins such as Add or Concat."""

    def activations(names: Iterable[str]) -> list[str]:
        return [t for t in names if t and t not in graph.initializers]

    ups: set[str] = set()
    back = activations(graph.node(op).inputs)
    while back:
        producer = graph.producer(back.pop())
        if producer is None:
            continue
        if producer.op_type in COMPUTING_OPS:
            ups.add(producer.name)
        elif len(activations(producer.inputs)) == 1:
            back += activations(producer.inputs)
    downs: set[str] = set()
    ahead = activations(graph.node(op).outputs)
    while ahead:
        for consumer in graph.consumers(ahead.pop()):
            if consumer.op_type in COMPUTING_OPS:
                downs.add(consumer.name)
            elif len(activations(consumer.inputs)) == 1:
                ahead += activations(consumer.outputs)
    order = [n.name for n in graph.nodes]
    return [n for n in order if n in ups and n != op], [n for n in order if n in downs and n != op]


def _candidates(graph: Graph, op: str, remaining: list[str]) -> list[list[str]]:
    """``op`` alone, with its still-int8 input producers, and with its still-int8 output consumers."""
    out = [[op]]
    for side in neighbours(graph, op):
        extra = [n for n in side if n in remaining]
        if extra:
            out.append([op, *extra])
    return out


def _layer_costs(graph: Graph, plan: QuantPlan) -> tuple[int, int, float]:
    """(size in bytes, all-int8 size, MAC-weighted relative latency) of ``plan``'s weighted layers."""
    size = size8 = 0
    macs = weighted = 0.0
    for node in graph.nodes:
        w_idx, b_idx = rules.WEIGHTED_OPS.get(node.op_type, (None, None))
        t = plan.node_types.get(node.name, F32)
        if (
            w_idx is None
            or t == F32
            or len(node.inputs) <= w_idx
            or node.inputs[w_idx] not in graph.initializers
        ):
            continue
        wide = 2 if t == S16 else 1
        w = graph.initializers[node.inputs[w_idx]]
        size += w.size * wide
        size8 += w.size
        if b_idx is not None and len(node.inputs) > b_idx and node.inputs[b_idx] in graph.initializers:
            n = graph.initializers[node.inputs[b_idx]].size
            size += n * 4 * wide
            size8 += n * 4
        out = graph.shape(node.outputs[0]) or (1,)
        per_out = w.size / max(w.shape[0], 1) if node.op_type == "Conv" else w.shape[0]
        m = float(np.prod(out[1:] if len(out) > 1 else out)) * per_out
        macs += m
        weighted += m * (INT16_COST_PER_MAC if t == S16 else 1.0)
    return int(size), int(size8), weighted / macs if macs else 1.0


def _ranking(qm: QuantizedModel, evals: list[dict]) -> list[tuple[str, float]]:
    from espq.analysis import analyse

    report = analyse(qm, evals, steps=max(len(evals) - 1, 0), kinds=("layerwise",), progress=False)
    return sorted(report.layerwise.items(), key=lambda kv: -kv[1])


def auto_mixed_precision(
    model: Any,
    calib_data: Iterable[Any],
    target: str = "esp32p4",
    max_error: float | None = None,
    max_int16_layers: int | None = None,
    max_size_bytes: int | None = None,
    setting: QuantSetting | None = None,
    recipe: str | None = None,
    calib_steps: int | None = None,
    collate_fn: Callable[[Any], Any] | None = None,
    input_shape: Any = None,
    eval_batches: int = 2,
    lookahead: int = 3,
    strategy: str = "greedy",
    progress: bool = True,
) -> QuantizedModel:
    """Quantize ``model`` at int8 and promote layers to int16 until the graphwise output error (noise-to-
    signal ratio of the outputs vs float on the first ``eval_batches`` calibration batches) is at most
    ``max_error``, or ``max_int16_layers`` layers are int16 (module docstring); with ``max_size_bytes``
    a promotion that would make the weighted layers' parameters (weights and biases, as stored) larger
    than that many bytes is not made. At least one of ``max_error`` / ``max_int16_layers`` is required.
    Returns the model; ``qm.plan.int16_nodes()`` lists the int16 nodes and ``qm.amp_report``
    (:class:`AmpReport`) the chosen layers, errors, size and relative latency.
    """
    if max_error is None and max_int16_layers is None:
        raise ConfigError("auto_mixed_precision needs max_error and/or max_int16_layers")
    if max_error is not None and (
        isinstance(max_error, bool) or not math.isfinite(max_error) or max_error < 0
    ):
        raise ConfigError(
            f"max_error must be a finite number >= 0 (an output NSR, e.g. 0.01), got {max_error!r}"
        )
    if max_int16_layers is not None and (
        isinstance(max_int16_layers, bool) or not isinstance(max_int16_layers, int) or max_int16_layers < 0
    ):
        raise ConfigError(f"max_int16_layers must be an integer >= 0, got {max_int16_layers!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    tgt, setting, steps, graph = prepare_inputs(model, target, setting, recipe, input_shape)
    graph = recipes.prepare_graph(graph, steps, tgt)
    _, skeleton = plan_skeleton(graph, tgt, 8, setting)
    kept: list = []
    feeds = keep_batches(iter_feeds(graph, calib_data, calib_steps, collate_fn), kept)
    stats = calibration_statistics(
        graph, skeleton, tgt, feeds, _all_activations(graph), calib_steps, progress
    )
    evals = _eval_feeds(kept, eval_batches)
    mixer = _Mixer(graph, setting, steps, tgt, stats, kept, evals)
    base_error, best = mixer.score([])
    error = base_error
    ranking = _ranking(best, evals)
    chosen: list[str] = []
    history: list[tuple[str, float]] = []
    remaining = [op for op, _ in ranking]
    budget = len(remaining) if max_int16_layers is None else max_int16_layers
    while remaining and len(chosen) < budget and (max_error is None or error > max_error):
        if strategy == "top_k":
            groups = [[remaining[0]]]
        else:
            groups = [g for op in remaining[:lookahead] for g in _candidates(graph, op, remaining)]
        scored = []
        for group in groups:
            if len(chosen) + len(group) > budget:
                continue
            err, qm = mixer.score([*chosen, *group])
            if max_size_bytes is not None and _layer_costs(qm.graph, qm.plan)[0] > max_size_bytes:
                if len(group) == 1:
                    remaining.remove(group[0])  # over the size budget, now and with any later addition
                continue
            # relative error reduction per promoted layer; top_k takes its one candidate regardless
            scored.append((math.log(error / max(err, 1e-30)) / len(group), group, err, qm))
        if not scored:  # no candidate of the best-ranked op fits the budgets
            if groups[0][0] in remaining:
                remaining.remove(groups[0][0])
            continue
        gain, group, err, qm = max(scored, key=lambda s: s[0])
        if strategy == "greedy" and gain <= 0:
            remaining.remove(groups[0][0])  # nothing near the best-ranked op helps now: skip it
            continue
        for op in group:
            remaining.remove(op)
        chosen += group
        history.append(("+".join(group), err))
        error, best = err, qm
    size, size8, latency = _layer_costs(best.graph, best.plan)
    best.amp_report = AmpReport(
        int16_layers=chosen,
        base_error=base_error,
        error=error,
        max_error=max_error,
        steps=history,
        ranking=ranking,
        size_bytes=size,
        int8_size_bytes=size8,
        relative_latency=latency,
        evaluations=mixer.evaluations,
    )
    return best


def _all_activations(graph: Graph) -> list[str]:
    names = [t for t in graph.inputs]
    for node in graph.nodes:
        names += [o for o in node.outputs if o]
        if node.op_type in rules.ALIGN_TO_LARGEST:
            names += [i for i in node.inputs if i in graph.initializers]
    return names


def _eval_feeds(kept: list[dict], n: int) -> list[dict[str, np.ndarray]]:
    if not kept:
        raise ConfigError("auto_mixed_precision got no calibration batch to measure the error on")
    return [{k: np.asarray(v) for k, v in f.items()} for f in kept[: max(1, n)]]


__all__ = ["AmpReport", "auto_mixed_precision", "followers", "neighbours", "output_error"]
