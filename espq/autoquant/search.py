"""Staged search: a cheap proxy on every configuration, successive halving, the full run on survivors.

1. Rung 0 quantizes every configuration calibrating on ``proxy_batches`` batches and ranks them by the
   output noise-to-signal ratio on those batches (float outputs computed once, :class:`Context`).
2. Each next rung multiplies the calibration batches by ``eta`` and keeps the best ``1/eta`` of the
   previous rung (never fewer than ``max_evaluations``), until the survivors fit ``max_evaluations`` or
   the next rung would use all batches.
3. The final stage runs the survivors on all calibration batches; the caller scores them (its
   ``evaluate``, else the output error on all batches) and exports them.

Runs over a budget (parameter bytes, predicted latency) drop out at the rung where that shows. A
configuration runs at most once per rung (key = its hash); finished runs are read back from the run
directory on resume. Ties rank by position in the space, so the order never depends on timing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from espq.autoquant.runner import RunResult
from espq.autoquant.space import Config
from espq.autoquant.store import RunStore

PROXY, FINAL = "proxy", "final"


@dataclass
class Budgets:
    """Deployment limits; ``None`` = no limit."""

    max_latency_ms: float | None = None
    max_size_bytes: int | None = None

    def fits(self, record: dict[str, Any]) -> bool:
        """Whether ``record``'s size and (when known) latency are within the limits."""
        if self.max_size_bytes is not None and record["param_bytes"] > self.max_size_bytes:
            return False
        lat = record.get("latency_ms")
        return not (self.max_latency_ms is not None and lat is not None and lat > self.max_latency_ms)


def rungs(total: int, proxy_batches: int, eta: int) -> list[int]:
    """Calibration batches per proxy rung (each ``eta`` times the previous, all below ``total``)."""
    out, b = [], max(1, min(proxy_batches, total))
    while b < total:
        out.append(b)
        b *= eta
    return out


def record_of(result: RunResult, stage: str, config: Config) -> dict[str, Any]:
    """The JSON record of one run (no wall time: the run directory's files are reproducible)."""
    return {
        "hash": result.key,
        "stage": stage,
        "batches": result.batches,
        "label": config.label(),
        "config": config.to_json(),
        "nsr": result.nsr,
        "param_bytes": result.param_bytes,
        "latency_ms": result.latency_ms,
        "int16_layers": result.int16_layers,
    }


def run_rung(backend: Any, store: RunStore, configs: list[Config], batches: int) -> list[dict[str, Any]]:
    """Proxy records of ``configs`` at ``batches`` (runs those not in ``store``), in ``configs`` order."""
    todo = [c for c in configs if store.done(c.key(), PROXY, batches) is None]
    for config, result in zip(todo, backend.map([(c, batches, False) for c in todo])):
        store.add(record_of(result, PROXY, config), config.to_json())
    return [store.done(c.key(), PROXY, batches) for c in configs]


def survivors(
    backend: Any,
    store: RunStore,
    configs: list[Config],
    total: int,
    proxy_batches: int,
    eta: int,
    keep: int,
    budgets: Budgets,
    log: Callable[[str], None] = lambda _: None,
) -> list[Config]:
    """The configurations that reach the final stage (at most ``keep``), best first."""
    alive = list(configs)
    order = {c.key(): i for i, c in enumerate(configs)}
    for batches in rungs(total, proxy_batches, eta):
        if len(alive) <= keep:
            break
        records = run_rung(backend, store, alive, batches)
        fit = [(c, r) for c, r in zip(alive, records) if budgets.fits(r)]
        levels = front_levels([_costs(r["nsr"], r) for _, r in fit])
        ranked = sorted((lv, r["nsr"], order[c.key()], c) for lv, (c, r) in zip(levels, fit))
        n = max(keep, math.ceil(len(alive) / eta))
        kept = min(n, len(ranked))
        log(f"rung {batches} batch(es): {len(alive)} run, {len(ranked)} within budget, {kept} kept")
        alive = [c for *_, c in ranked[:n]]
    return alive[:keep]


def _costs(error: float, record: dict[str, Any]) -> tuple[float, float, float]:
    lat = record.get("latency_ms")
    return (error, 0.0 if lat is None else lat, float(record["param_bytes"]))


def _dominates(a: tuple, b: tuple) -> bool:
    return all(x <= y for x, y in zip(a, b)) and a != b


def front_levels(costs: list[tuple[float, ...]]) -> list[int]:
    """Non-dominated sorting: 0 for the Pareto front of ``costs`` (lower is better in every entry), 1 for
    the front of the rest, and so on. Survivors are taken level by level (best error first within one),
    so the most accurate small/fast configurations reach the final stage beside the most accurate ones.
    Of identical cost tuples (configurations that quantized the same way) only the first is on a level;
    the others count as dominated by it."""
    level = [-1] * len(costs)
    current, remaining = 0, set(range(len(costs)))
    while remaining:
        front = {
            i
            for i in remaining
            if not any(_dominates(costs[j], costs[i]) or (costs[j] == costs[i] and j < i) for j in remaining)
        }
        for i in front:
            level[i] = current
        remaining -= front
        current += 1
    return level


def rank(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """``records`` best first by ``score`` (``direction`` "maximize"/"minimize"), ties by ``index``."""
    sign = -1.0 if direction == "maximize" else 1.0
    return sorted(records, key=lambda r: (sign * r["score"], r["index"]))


def top_k(
    records: list[dict[str, Any]],
    k: int,
    direction: str,
    candidate_filter: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """The ``k`` best records; with ``candidate_filter``, half (rounded down) from the records it accepts
    and the rest from the others, topped up from either side when one runs short (ESP-PPQ 1.3.12's
    balanced Top-K, esp_ppq/autoquant/candidates.py)."""
    ranked = rank(records, direction)
    if candidate_filter is None:
        return ranked[:k]
    preferred = [r for r in ranked if candidate_filter(r)]
    others = [r for r in ranked if not candidate_filter(r)]
    if not preferred or not others:
        return ranked[:k]
    target = min(k, len(ranked))
    n_pref = target // 2
    picked = preferred[:n_pref] + others[: target - n_pref]
    rest = preferred[n_pref:] + others[target - n_pref :]
    picked += rank(rest, direction)[: target - len(picked)]
    return rank(picked, direction)


def pareto_front(records: list[dict[str, Any]], direction: str) -> list[dict[str, Any]]:
    """Records no other record beats on score, latency (when known) and parameter bytes at once."""

    sign = -1.0 if direction == "maximize" else 1.0
    levels = front_levels([_costs(sign * r["score"], r) for r in records])
    return rank([r for r, lv in zip(records, levels) if lv == 0], direction)


__all__ = [
    "FINAL",
    "PROXY",
    "Budgets",
    "front_levels",
    "pareto_front",
    "rank",
    "rungs",
    "run_rung",
    "survivors",
    "top_k",
]
