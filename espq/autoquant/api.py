"""``espq.autoquant``: find the most accurate deployable quantization of a model within budgets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np

from espq.autoquant.backends import check_backend, make_backend
from espq.autoquant.report import write_report
from espq.autoquant.runner import Context, RunResult, latency_estimator, latency_ms, run_config
from espq.autoquant.search import FINAL, Budgets, pareto_front, survivors, top_k
from espq.autoquant.space import Config, default_space, unique
from espq.autoquant.store import RunStore
from espq.errors import ConfigError, InputDataError
from espq.frontends import load
from espq.quant import QuantizedModel, QuantSetting
from espq.quant.data import iter_feeds
from espq.targets import get_target

RESERVED = frozenset({"score", "hash", "index", "folder", "files", "stage", "batches", "config", "label"})
Evaluate = Callable[[QuantizedModel], Any]


@dataclass
class AutoQuantResult:
    """What :func:`autoquant` found.

    ``candidates``: the Top-K finalists within the budgets, best first (as in ``candidates.json``);
    ``best``: the first of them; ``front``: the finalists no other finalist beats on score, latency and
    size at once; ``summary``: every run record; ``runs``: runs executed by this call (0 when a resumed
    search had nothing left to do); ``seconds``: its wall time. ``model`` is the chosen
    :class:`~espq.QuantizedModel` (rebuilt by one run on first access when it came from an earlier,
    resumed search).
    """

    best: dict[str, Any]
    candidates: list[dict[str, Any]]
    front: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    run_dir: Path
    runs: int
    seconds: float
    score_direction: str
    budgets: dict[str, Any] = field(default_factory=dict)
    _ctx: Context = field(repr=False, default=None)
    _models: dict[str, QuantizedModel] = field(repr=False, default_factory=dict)

    @property
    def config(self) -> Config:
        """The chosen configuration."""
        return Config.from_json(self.best["config"])

    @property
    def model(self) -> QuantizedModel:
        """The chosen quantized model."""
        key = self.best["hash"]
        if key not in self._models:
            r = run_config(self._ctx, self.config, self.best["batches"], keep_model=True)
            self._models[key] = to_model(r, self._ctx.target)
        return self._models[key]

    def export(self, path: str | Path, **kwargs: Any) -> Any:
        """Export the chosen model to ``path`` (+ ``.info``/``.json``; :meth:`QuantizedModel.export`)."""
        return self.model.export(path, **kwargs)

    def write_report(self, path: str | Path | None = None) -> Path:
        """Write the search's HTML report (:mod:`espq.autoquant.report`); default
        ``<run_dir>/report.html`` (written by every search)."""
        return write_report(self, self.run_dir / "report.html" if path is None else path, self.budgets)


def to_model(result: RunResult, target: str) -> QuantizedModel:
    """The :class:`QuantizedModel` of a run kept with its model."""
    return QuantizedModel(result.graph, result.plan, get_target(target), float_graph=result.float_graph)


def _score(evaluate: Evaluate | None, qm: QuantizedModel, nsr: float) -> tuple[float, dict[str, Any]]:
    if evaluate is None:
        return nsr, {}
    out = evaluate(qm)
    score, extras = out if isinstance(out, tuple) and len(out) == 2 else (out, {})
    if isinstance(score, bool) or not isinstance(score, Real) or not math.isfinite(float(score)):
        raise ConfigError(f"evaluate must return a finite number (or (number, dict)), got {score!r}")
    if not isinstance(extras, dict) or set(extras) & RESERVED:
        raise ConfigError(f"evaluate's extras must be a dict without the keys {sorted(RESERVED)}")
    return float(score), {str(k): float(v) for k, v in extras.items()}


def _final_stage(
    backend: Any,
    store: RunStore,
    finalists: list[Config],
    total: int,
    ctx: Context,
    evaluate: Evaluate | None,
    models: dict[str, QuantizedModel],
) -> None:
    """Run, score and export each finalist not already finished in ``store``."""
    todo = [c for c in finalists if store.done(c.key(), FINAL, total) is None]
    for config, result in zip(todo, backend.map([(c, total, True) for c in todo])):
        qm = to_model(result, ctx.target)
        lat = result.latency_ms if result.latency_ms is not None else latency_ms(qm)
        score, extras = _score(evaluate, qm, result.nsr)
        folder = store.folder(result.key)
        folder.mkdir(parents=True, exist_ok=True)
        qm.export(folder / "model.espdl", overwrite=True)
        record = {
            "hash": result.key,
            "stage": FINAL,
            "batches": total,
            "label": config.label(),
            "config": config.to_json(),
            "nsr": result.nsr,
            "param_bytes": result.param_bytes,
            "latency_ms": lat,
            "int16_layers": result.int16_layers,
            "score": score,
            "files": ["model.espdl", "model.info", "model.json"],
            **extras,
        }
        store.add(record, config.to_json())
        models[result.key] = qm


def autoquant(
    model: Any,
    calib: Iterable[Any],
    target: str = "esp32p4",
    evaluate: Evaluate | None = None,
    max_latency_ms: float | None = None,
    max_size_bytes: int | None = None,
    max_evaluations: int = 4,
    workers: int = 1,
    backend: str = "process",
    seed: int = 0,
    *,
    bits: int = 8,
    calib_steps: int | None = None,
    collate_fn: Callable[[Any], Any] | None = None,
    input_shape: Any = None,
    space: list[Config] | None = None,
    setting: QuantSetting | None = None,
    proxy_batches: int = 2,
    eta: int = 3,
    score_direction: str = "maximize",
    num_candidates: int = 5,
    candidate_filter: Callable[[dict[str, Any]], bool] | None = None,
    exhaustive: bool = False,
    run_dir: str | Path = "espq-autoquant",
    resume: bool = False,
    ray_address: str | None = None,
    device: str = "cpu",
    log: Callable[[str], None] | None = None,
    describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> AutoQuantResult:
    """Search quantization settings of ``model`` for ``target`` and return the best within the budgets.

    ``calib``: calibration batches (as for :func:`espq.quantize`; ``calib_steps`` of them are used).
    ``evaluate(qm) -> score`` or ``(score, extras_dict)``: the user's metric, run only on the finalists
    (at most ``max_evaluations``), higher is better unless ``score_direction="minimize"``; without it the
    score is the output noise-to-signal ratio against the float model on all calibration batches (lower
    is better). ``max_latency_ms`` (needs :mod:`espq.targets.latency`) and ``max_size_bytes`` (parameter
    bytes as stored) are hard limits. The search (:mod:`espq.autoquant.search`) ranks every
    configuration of ``space`` (default :func:`espq.autoquant.space.default_space`) by a proxy on
    ``proxy_batches`` batches, then halves by ``eta``; ``exhaustive=True`` runs and evaluates every
    configuration in full instead. ``seed`` chooses which batches the proxy uses. ``backend``:
    "process" (``workers`` local processes; 1 = this process), "ray" (Ray tasks; ``ray_address`` of an
    existing cluster, else a local Ray with ``workers`` CPUs) or "serial"; every backend gives the same
    result. ``run_dir`` holds ``summary.json``, ``candidates.json`` and one folder per configuration
    (:mod:`espq.autoquant.store`); ``resume=True`` skips every run recorded there; ``describe`` adds
    fields to every record (from the configuration's JSON).
    """
    start = time.perf_counter()
    say = log or (lambda _: None)
    if score_direction not in ("maximize", "minimize"):
        raise ConfigError(f"score_direction must be 'maximize' or 'minimize', got {score_direction!r}")
    for name, value in (
        ("max_evaluations", max_evaluations),
        ("num_candidates", num_candidates),
        ("eta", eta),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "eta" else 1):
            raise ConfigError(f"{name} must be an integer >= {2 if name == 'eta' else 1}, got {value!r}")
    check_backend(backend, workers)
    latency = latency_estimator() is not None
    if max_latency_ms is not None and not latency:
        raise ConfigError(
            "max_latency_ms needs the latency model espq.targets.latency, which is not installed"
        )
    tgt = get_target(target)
    graph = load(model, input_shape=input_shape)
    feeds = [
        {k: np.asarray(v) for k, v in f.items()} for f in iter_feeds(graph, calib, calib_steps, collate_fn)
    ]
    if not feeds:
        raise InputDataError("autoquant got no calibration batch")
    order = np.random.default_rng(seed).permutation(len(feeds))
    feeds = [feeds[i] for i in order]
    configs = unique(space if space is not None else default_space(mixed_precision=bits == 8))
    if bits == 16:
        configs = [c for c in configs if not c.int16_layers]
    if not configs:
        raise ConfigError("autoquant's search space is empty")
    # proxy runs predict latency only to honour a latency budget; finalists always (when the model exists)
    proxy_latency = max_latency_ms is not None
    ctx = Context(
        graph, feeds, tgt.name, bits, setting, min(proxy_batches, len(feeds)), device, proxy_latency
    )
    ctx.float_outputs(ctx.proxy_batches)
    ctx.float_outputs(len(feeds))  # computed once here, sent to every worker
    direction = "minimize" if evaluate is None else score_direction
    budgets = Budgets(max_latency_ms, max_size_bytes)
    store = RunStore(run_dir, resume, describe)
    runner = make_backend(backend, ctx, workers, ray_address)
    models: dict[str, QuantizedModel] = {}
    total = len(feeds)
    try:
        if exhaustive:
            finalists = configs
        else:
            finalists = survivors(
                runner, store, configs, total, proxy_batches, eta, max_evaluations, budgets, say
            )
        say(f"final: {len(finalists)} candidate(s) on {total} batch(es)")
        _final_stage(runner, store, finalists, total, ctx, evaluate, models)
    finally:
        runner.close()
    finals = [store.done(c.key(), FINAL, total) for c in finalists]
    within = [r for r in finals if budgets.fits(r)]
    if not within:
        raise ConfigError(
            f"no candidate fits the budgets (max_latency_ms={max_latency_ms}, "
            f"max_size_bytes={max_size_bytes}); "
            f"smallest finalist: {min((r['param_bytes'] for r in finals), default='none')} bytes. "
            f"Raise a budget or widen the space; the runs are in {store.root}"
        )
    candidates = top_k(within, num_candidates, direction, candidate_filter)
    store.write_candidates(candidates)
    result = AutoQuantResult(
        best=candidates[0],
        candidates=candidates,
        front=pareto_front(finals, direction),
        summary=list(store.summary),
        run_dir=store.root,
        runs=runner.runs,
        seconds=time.perf_counter() - start,
        score_direction=direction,
        budgets={"max_latency_ms": max_latency_ms, "max_size_bytes": max_size_bytes},
        _ctx=ctx,
        _models=models,
    )
    result.write_report()
    return result


__all__ = ["AutoQuantResult", "autoquant", "to_model"]
