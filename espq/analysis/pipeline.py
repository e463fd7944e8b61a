"""Quantization error analysis: graph-wise (accumulated), layer-wise (ESP-PPQ's) and isolated (local).

Per batch: one float pass (keeping what the other passes need, measuring the isolated error on the
spot), one quantized pass (graph-wise), then the layer-wise re-runs of each op's downstream subgraph
from the cached float activations. ``steps=8`` uses 9 batches, as ESP-PPQ does (esp_ppq_facts.md §5.2).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from espq.analysis.graphwise import GraphwisePass
from espq.analysis.isolated import IsolatedPass
from espq.analysis.kinds import KINDS
from espq.analysis.layerwise import LayerwisePass
from espq.analysis.metrics import METRICS
from espq.analysis.ops import QuantOpEvaluator, measured_ops
from espq.analysis.report import AnalysisReport, OpInfo, TensorHistogram, format_table
from espq.errors import ConfigError
from espq.ir import Node
from espq.ir import quant_rules as rules
from espq.ir.op_facts import COMPUTING_OPS
from espq.ir.spec import F32
from espq.quant.data import iter_feeds
from espq.sim.float.executor import load_kernels, run_graph
from espq.sim.memory import reuse_freed_memory

HIST_BINS = 64

__all__ = ["KINDS", "AnalysisReport", "analyse", "format_table"]


def _check_kinds(kinds: Iterable[str], metric: str) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ConfigError(f"unknown analysis kind(s) {bad or kinds!r}; choose from {', '.join(KINDS)}")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    return kinds


def _is_empty(data: Any) -> tuple[bool, Any]:
    """Whether ``data`` yields no batch; returns an equivalent iterable (a peeked iterator is re-chained)."""
    if data is None or isinstance(data, (np.ndarray, torch.Tensor, dict)):
        return False, data
    if iter(data) is data:  # one-shot iterator: peek and put the item back
        first = next(data, _NOTHING)
        return (True, data) if first is _NOTHING else (False, itertools.chain([first], data))
    return next(iter(data), _NOTHING) is _NOTHING, data


_NOTHING = object()


def _model_summary(qm) -> dict[str, Any]:
    g, plan = qm.graph, qm.plan
    op_counts: dict[str, int] = {}
    for n in g.nodes:
        op_counts[n.op_type] = op_counts.get(n.op_type, 0) + 1
    types: dict[str, int] = {}
    for n in g.nodes:
        t = plan.node_types.get(n.name, F32)
        types[t] = types.get(t, 0) + 1
    n_params = int(sum(np.asarray(v).size for v in g.initializers.values()))
    return {
        "name": g.name,
        "target": qm.target.name,
        "bits": plan.bits,
        "calib_algorithm": plan.calib_algorithm,
        "nodes": len(g.nodes),
        "parameters": n_params,
        "op_counts": dict(sorted(op_counts.items())),
        "quant_types": dict(sorted(types.items())),
        "inputs": {n: list(g.shape(n) or ()) for n in g.inputs},
        "outputs": {n: list(g.shape(n) or ()) for n in g.outputs},
    }


def _exp(e: Any) -> Any:
    return list(e) if isinstance(e, tuple) else e


def _stats_of(qm, tensor: str):
    spec = qm.plan.tensors.get(tensor)
    st = qm.stats.get(tensor)
    if st is None and spec is not None and spec.group:
        st = qm.stats.get(spec.group)
    return st


def _clip_level(bits: int, exponent: Any) -> float | None:
    if exponent is None or isinstance(exponent, tuple):
        return None
    return ((1 << (bits - 1)) - 1) * 2.0 ** int(exponent)


def clip_ratio(stats, clip: float | None) -> float | None:
    """Fraction of calibration values with |x| above ``clip`` (saturated by the chosen exponent)."""
    if stats is None or clip is None or stats.count == 0:
        return None
    h = stats.hist.numpy()
    total = float(h.sum())
    if total <= 0 or stats.range <= 0:
        return 0.0
    edges = np.linspace(0.0, stats.range, h.size + 1)
    cdf = np.concatenate([[0.0], np.cumsum(h)])
    below = float(np.interp(min(clip, stats.range), edges, cdf))
    return max(0.0, (total - below) / total)


def _op_info(qm, node: Node) -> OpInfo:
    plan = qm.plan
    qt = plan.node_types.get(node.name, F32)
    spec = plan.tensors.get(node.outputs[0])
    bits = spec.bits if spec is not None else plan.bits
    weight_idx, bias_idx = rules.WEIGHTED_OPS.get(node.op_type, (None, None))
    inputs = {}
    for i, src in enumerate(node.inputs):
        if src and src not in qm.graph.initializers:
            s = plan.input_spec(node.name, i, src)
            inputs[src] = None if s is None else _exp(s.exponent)

    def param_exp(idx: int | None) -> Any:
        if idx is None or idx >= len(node.inputs) or not node.inputs[idx]:
            return None
        return _exp(plan.exponent(node.inputs[idx]))

    out_exp = None if spec is None else spec.exponent
    return OpInfo(
        name=node.name,
        op_type=node.op_type,
        quant_type=qt,
        bits=bits,
        output=node.outputs[0],
        input_exponents=inputs,
        weight_exponent=param_exp(weight_idx),
        bias_exponent=param_exp(bias_idx),
        output_exponent=_exp(out_exp),
        fused_relu=plan.fused.get(node.name),
        clip_ratio=clip_ratio(
            _stats_of(qm, node.outputs[0]), None if spec is None else _clip_level(bits, out_exp)
        ),
    )


def _histogram(qm, tensor: str) -> TensorHistogram | None:
    spec = qm.plan.tensors.get(tensor)
    st = _stats_of(qm, tensor)
    if st is None or spec is None or st.count == 0:
        return None
    h = st.hist.numpy()
    counts = h.reshape(HIST_BINS, -1).sum(axis=1) if h.size % HIST_BINS == 0 else h
    exp = spec.exponent if isinstance(spec.exponent, int) else None
    return TensorHistogram(
        tensor=tensor,
        bits=spec.bits,
        exponent=exp,
        clip=_clip_level(spec.bits, exp),
        min=float(st.min),
        max=float(st.max),
        range=float(st.range),
        counts=[float(c) for c in counts],
    )


def channels_last(feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """4-D float inputs in channels-last memory order: torch's CPU convolutions run faster on it and every
    downstream tensor inherits it. Values are unchanged (only the memory layout differs)."""
    return {
        k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 and v.is_floating_point() else v
        for k, v in feeds.items()
    }


def _bar(total: int | None, desc: str, progress: bool, position: int) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit="batch",
        disable=None if progress else True,
        leave=False,
        position=position,
    )


def _float_pass(graph, feeds: dict[str, torch.Tensor], keep: set[str] | None, kernels) -> dict:
    """Run the float model; return the feeds, the graph outputs and the node outputs named in ``keep``
    (every node output when ``keep`` is None)."""
    cache: dict[str, torch.Tensor] = dict(feeds)

    def hook(node: Node, index: int, tensor: torch.Tensor) -> torch.Tensor:
        name = node.outputs[index]
        if keep is None or name in keep:
            cache[name] = tensor
        return tensor

    cache.update(run_graph(graph, feeds, list(graph.outputs), hook=hook, kernels=kernels))
    return cache


def analyse(
    qm,
    data: Iterable[Any],
    steps: int = 8,
    kinds: Iterable[str] = KINDS,
    collate_fn: Callable[[Any], Any] | None = None,
    progress: bool = True,
    metric: str = "snr",
) -> AnalysisReport:
    """Quantization error of every quantized computing op of ``qm`` (a :class:`espq.QuantizedModel`).

    ``data``: an iterable of batches in any form :func:`espq.quantize` accepts; ``steps + 1`` batches are
    used (ESP-PPQ's count), fewer if ``data`` is shorter. ``kinds``: any of "graphwise", "layerwise",
    "isolated". ``metric`` ("snr", "cosine" or "mse") is the one shown; all three are computed and kept in
    ``report.values``. An empty ``data`` or a model without quantized computing ops gives an empty
    report with a note (and a warning) instead of an error.
    """
    kinds = _check_kinds(kinds, metric)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ConfigError(f"analysis steps must be a non-negative integer, got {steps!r}")
    load_kernels()
    graph, sim = qm.float_graph, qm.sim  # float references run the float model; ``sim`` the quantized one
    ops = measured_ops(graph, qm.plan.node_types)
    report = AnalysisReport(model=_model_summary(qm), metric=metric, kinds=kinds)
    gate = getattr(qm, "quality", None)  # the quality gate's report (espq.quant.quality), when checked
    report.quality = gate.to_dict() if gate is not None else None
    report.precision = {n: t for n, t in qm.plan.node_types.items() if t != f"S{qm.plan.bits}"}
    report.ops = [_op_info(qm, op) for op in ops]
    report.histograms = [h for h in (_histogram(qm, op.outputs[0]) for op in ops) if h is not None]
    if not ops:
        msg = (
            f"model '{graph.name}' has no quantized computing op ({', '.join(sorted(COMPUTING_OPS))}); "
            "nothing to analyse"
        )
        report.notes.append(msg)
        warnings.warn(msg, stacklevel=2)
        return report
    empty, data = _is_empty(data)
    if empty:
        msg = "the analysis data is empty (it yielded no batch); pass at least one batch to analyse"
        report.notes.append(msg)
        warnings.warn(msg, stacklevel=2)
        return report

    evaluator = QuantOpEvaluator(graph, sim)
    gw = GraphwisePass(sim, ops) if "graphwise" in kinds else None
    iso = IsolatedPass(evaluator, ops) if "isolated" in kinds else None
    lw = LayerwisePass(graph, evaluator, ops) if "layerwise" in kinds else None

    n_batches = steps + 1
    try:
        n_batches = min(n_batches, len(data))  # type: ignore[arg-type]
    except TypeError:
        pass
    bars = {"float": _bar(n_batches, "float pass" + (" + isolated" if iso else ""), progress, 0)}
    if gw:
        bars["graphwise"] = _bar(n_batches, "graphwise (quantized pass)", progress, 1)
    if lw:
        bars["layerwise"] = tqdm(
            total=n_batches * len(ops),
            desc="layerwise",
            unit="op",
            disable=None if progress else True,
            leave=False,
            position=2,
        )
    seconds = dict.fromkeys(["float", *kinds], 0.0)
    keep = set(gw.float_tensors) if gw else set()
    float_table = iso.kernels({}) if iso else {}
    feeds_iter = itertools.islice(iter_feeds(graph, data, None, collate_fn, what="analysis"), steps + 1)
    try:
        with reuse_freed_memory():  # large activations reuse freed memory: no page faults (espq.sim.memory)
            for batch in feeds_iter:
                feeds = channels_last({k: torch.as_tensor(v) for k, v in batch.items()})
                t0 = time.perf_counter()
                cache = _float_pass(graph, feeds, None if lw else keep, float_table)
                t1 = time.perf_counter()
                seconds["float"] += t1 - t0
                bars["float"].update(1)
                if gw:
                    gw.run(feeds, cache)
                    seconds["graphwise"] += time.perf_counter() - t1
                    bars["graphwise"].update(1)
                if lw:
                    t2 = time.perf_counter()
                    lw.run(cache, bars["layerwise"])
                    seconds["layerwise"] += time.perf_counter() - t2
                report.batches += 1
                report.samples += int(next(iter(feeds.values())).shape[0]) if feeds else 0
                del cache  # free this batch's activations before the next float pass
    finally:
        for b in bars.values():
            b.close()
    if iso:  # measured inside the float pass
        seconds["isolated"] = seconds["float"]
    report.seconds = {k: round(v, 3) for k, v in seconds.items()}
    if lw:
        report.info["layerwise_unperturbed_ops"] = sum(
            1 for v in lw.unperturbed.values() if v == report.batches
        )
    for kind, p in (("graphwise", gw), ("layerwise", lw), ("isolated", iso)):
        if p is not None:
            report.values[kind] = {m: {name: r.value(m) for name, r in p.recorders.items()} for m in METRICS}
    if gw is not None:
        report.outputs = {name: r.values() for name, r in gw.output_recorders.items() if r.count}
    return report
