"""Run one candidate: quantize with a :class:`~espq.autoquant.space.Config` on the first ``n`` calibration
batches and measure its output error against cached float outputs.

A :class:`Context` holds what every run shares (the loaded float graph, the calibration feeds in the
search's seeded order, the float outputs on the error-measurement batches, computed once) and is sent once
to each worker process; a run returns plain data (:class:`RunResult`), with the quantized graph and plan
only when asked (finalists).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from espq.autoquant.space import Config
from espq.ir import Graph
from espq.ir.spec import QuantPlan
from espq.quant import QuantSetting, quantize
from espq.quant.metrics import output_error
from espq.quant.mixed_precision import auto_mixed_precision
from espq.sim.float import run_float


@dataclass
class Context:
    """What every candidate run shares."""

    graph: Graph
    feeds: list[dict[str, np.ndarray]]
    target: str
    bits: int
    base_setting: QuantSetting | None
    proxy_batches: int
    device: str = "cpu"
    #: estimate each candidate's on-chip latency (needs espq.targets.latency)
    latency: bool = False
    #: float outputs per number of measured batches (filled on first use, then reused)
    reference: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def measured(self, n: int) -> dict[str, np.ndarray]:
        """The first ``n`` feeds stacked along the batch axis."""
        return {k: np.concatenate([f[k] for f in self.feeds[:n]]) for k in self.feeds[0]}

    def float_outputs(self, n: int) -> dict[str, np.ndarray]:
        """Float outputs on :meth:`measured` ``(n)``, computed once."""
        if n not in self.reference:
            self.reference[n] = run_float(self.graph, self.measured(n))
        return self.reference[n]


@dataclass
class RunResult:
    """One run's numbers (and, for finalists, the model's parts)."""

    key: str
    batches: int
    nsr: float
    param_bytes: int
    int16_layers: list[str]
    seconds: float
    latency_ms: float | None = None
    graph: Graph | None = None
    float_graph: Graph | None = None
    plan: QuantPlan | None = None


def param_bytes(graph: Graph, plan: QuantPlan) -> int:
    """Bytes of the quantized parameters as stored (int8: 1, int16: 2, int32 biases: 4, float: 4)."""
    total = 0
    for name, value in graph.initializers.items():
        spec = plan.spec(name)
        width = 4 if spec is None else max(1, spec.bits // 8)
        total += int(np.asarray(value).size) * width
    return total


def latency_estimator() -> Any:
    """``espq.targets.latency.estimate`` when that module exists, else ``None``."""
    try:
        from espq.targets.latency import estimate
    except ImportError:
        return None
    return estimate


def latency_ms(qm: Any) -> float | None:
    """Predicted on-chip milliseconds of ``qm`` (its ``.espdl`` built in memory); ``None`` without the
    latency model or for a target it has no data for."""
    estimate = latency_estimator()
    if estimate is None:
        return None
    from espq.export import build_espdl

    ms = float(estimate(build_espdl(qm), qm.target.name).ms)
    return ms if math.isfinite(ms) else None  # NaN: no published latencies for this target


def run_config(ctx: Context, config: Config, batches: int, keep_model: bool = False) -> RunResult:
    """Quantize with ``config`` calibrating on the first ``batches`` feeds; the error is the output noise-
    to-signal ratio on the first ``min(batches, ctx.proxy_batches)`` feeds (the smallest rung's set, so
    every rung is compared on the same images) or on all ``batches`` at the final rung (``keep_model``).
    One torch thread, so runs give the same numbers in any process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the quality gate's warnings, once per candidate
            qm = _quantize(ctx, config, batches)
        n = batches if keep_model else min(batches, ctx.proxy_batches)
        nsr = output_error(qm.run(ctx.measured(n)), ctx.float_outputs(n))
    finally:
        torch.set_num_threads(threads)
    return RunResult(
        latency_ms=latency_ms(qm) if ctx.latency else None,
        key=config.key(),
        batches=batches,
        nsr=float(nsr),
        param_bytes=param_bytes(qm.graph, qm.plan),
        int16_layers=sorted(qm.plan.int16_nodes()),
        seconds=time.perf_counter() - start,
        graph=qm.graph if keep_model else None,
        float_graph=qm.float_graph if keep_model else None,
        plan=qm.plan if keep_model else None,
    )


def _quantize(ctx: Context, config: Config, batches: int) -> Any:
    setting, recipe = config.setting(ctx.base_setting)
    data = ctx.feeds[:batches]
    if config.int16_layers:
        return auto_mixed_precision(
            ctx.graph.copy(),
            data,
            target=ctx.target,
            max_int16_layers=config.int16_layers,
            setting=setting,
            recipe=recipe,
            progress=False,
        )
    return quantize(
        ctx.graph.copy(),
        data,
        target=ctx.target,
        bits=ctx.bits,
        setting=setting,
        recipe=recipe,
        progress=False,
        device=ctx.device,
    )


__all__ = ["Context", "RunResult", "output_error", "param_bytes", "run_config"]
