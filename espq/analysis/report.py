"""The analysis report: per-op numbers, ESP-PPQ-style terminal tables, a plain-language summary, JSON."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from espq.analysis.kinds import KINDS, TITLES
from espq.analysis.metrics import LABELS, METRICS

#: Last-layer graph-wise noise/signal ratios separating the summary's verdicts (peers.md §1 #9:
#: about 10 % is acceptable for classification, dense regression needs far less).
SNR_SMALL, SNR_LARGE = 0.01, 0.10


@dataclass
class OpInfo:
    """Quantization facts of one analysed op."""

    name: str
    op_type: str
    quant_type: str
    bits: int
    output: str
    input_exponents: dict[str, Any] = field(default_factory=dict)
    weight_exponent: Any = None
    bias_exponent: Any = None
    output_exponent: Any = None
    fused_relu: str | None = None
    clip_ratio: float | None = None


@dataclass
class TensorHistogram:
    """Calibration histogram of |x| for one tensor, with the clip level of its exponent."""

    tensor: str
    bits: int
    exponent: int | None
    clip: float | None
    min: float
    max: float
    range: float
    counts: list[float]


def format_table(values: dict[str, float], metric: str = "snr", label: str = "Layer") -> str:
    """ESP-PPQ's ``MeasurePrinter`` table (esp_ppq_facts.md §5.4): sorted largest first, 20-block bars."""
    if not values:
        return ""
    rows = sorted(values.items(), key=lambda kv: (not math.isnan(kv[1]), 0.0 if math.isnan(kv[1]) else kv[1]))
    rows.reverse()  # largest first, NaN last
    finite = [v for _, v in rows if not math.isnan(v)] or [0.0]
    hi, lo = max(finite), min(finite)
    width = max([len(label)] + [len(n) for n in values])
    lines = [f"{label}{' ' * (width - len(label))}  | {LABELS[metric]} "]
    for name, v in rows:
        blocks = 0 if math.isnan(v) else round((v - lo) / (hi - lo + 1e-7) * 20)
        number = f"{v:.4f}" if metric == "mse" else f"{v * 100:.3f}%"
        lines.append(f"{name}:{' ' * (width - len(name))} | {'█' * blocks}{' ' * (20 - blocks)} | {number}")
    return "\n".join(lines)


def _pct(v: float) -> str:
    return f"{v * 100:.3g} %"


@dataclass
class AnalysisReport:
    """Result of :func:`espq.analysis.analyse`.

    ``values[kind][metric][op]`` holds every number; ``graphwise``/``layerwise``/``isolated`` give the
    primary ``metric`` per op name (empty when that kind was not computed).
    """

    model: dict[str, Any]
    metric: str = "snr"
    kinds: tuple[str, ...] = KINDS
    ops: list[OpInfo] = field(default_factory=list)
    values: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    batches: int = 0
    samples: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    histograms: list[TensorHistogram] = field(default_factory=list)
    precision: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: the quality gate's report on the model (``QualityReport.to_dict()``: findings, one line each, and
    #: the fixes espq applied); None when the model was not checked (quantized from a saved plan)
    quality: dict[str, Any] | None = None
    #: graph-wise error of each float graph output (output name -> metric -> value): the model's
    #: end-to-end error, which the summary reads (the last measured op may not feed every output)
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)

    def _kind(self, kind: str) -> dict[str, float]:
        return dict(self.values.get(kind, {}).get(self.metric, {}))

    @property
    def graphwise(self) -> dict[str, float]:
        return self._kind("graphwise")

    @property
    def layerwise(self) -> dict[str, float]:
        return self._kind("layerwise")

    @property
    def isolated(self) -> dict[str, float]:
        return self._kind("isolated")

    @property
    def empty(self) -> bool:
        return not any(self.values.get(k, {}).get(self.metric) for k in KINDS)

    # ------------------------------------------------------------------ text
    def summary(self) -> str:
        """One plain-language line reading the numbers (noise/signal metric only)."""
        if self.empty:
            return "no analysis values: " + ("; ".join(self.notes) or "nothing was measured")
        if self.metric != "snr":
            return (
                f"{len(self.ops)} op(s) analysed over {self.samples} sample(s); metric {LABELS[self.metric]}"
            )
        parts = []
        gw = self.graphwise
        outs = {n: m[self.metric] for n, m in self.outputs.items() if not math.isnan(m[self.metric])}
        if outs or gw:
            if outs:
                worst = max(outs, key=outs.__getitem__)
                v = outs[worst]
                what = f"graph output '{worst}'" + (f" (worst of {len(outs)})" if len(outs) > 1 else "")
            else:
                v = gw[next(op.name for op in reversed(self.ops) if op.name in gw)]
                what = "last-layer"
            if v > SNR_LARGE:
                verdict = f"(>{SNR_LARGE * 100:.0f} %): expect a visible accuracy drop"
            elif v > SNR_SMALL:
                verdict = (
                    f"({SNR_SMALL * 100:.0f}–{SNR_LARGE * 100:.0f} %): usually fine for classification, "
                    "check the task metric (regression/dense outputs need less)"
                )
            else:
                verdict = f"(<{SNR_SMALL * 100:.0f} %): output close to float"
            parts.append(f"{what} graphwise error {_pct(v)} {verdict}")
        ranking_kind = "layerwise" if self.layerwise else "isolated" if self.isolated else None
        if ranking_kind:
            ranked = sorted(self._kind(ranking_kind).items(), key=lambda kv: kv[1], reverse=True)[:3]
            names = ", ".join(f"{n} ({_pct(v)})" for n, v in ranked)
            hint = "try int16 for them" if ranked and ranked[0][1] > SNR_SMALL / 10 else "all small"
            parts.append(f"the top {len(ranked)} {ranking_kind} offenders are {names}; {hint}")
        return "; ".join(parts)

    def quality_lines(self) -> list[str]:
        """The quality gate's section: one line per finding (tensor/op, measured damage, fix), then one
        per fix espq applied; empty when the model was not checked."""
        q = self.quality
        if q is None:
            return []
        if not q["lines"]:
            head = f"quality gate: no damaged output, channel or op found ({q['samples']} sample(s))"
        else:
            head = f"quality gate: {len(q['lines'])} finding(s) on {q['samples']} sample(s)"
        return [head, *("  " + line for line in q["lines"]), *("  applied: " + a for a in q["applied"])]

    def format(self) -> str:
        """All tables with their titles, the quality gate's findings, then the summary line."""
        m = self.model
        out = [
            f"espq analysis of '{m.get('name')}' ({m.get('target')}, {m.get('bits')}-bit): "
            f"{len(self.ops)} op(s), {self.batches} batch(es), {self.samples} sample(s)"
        ]
        out += [f"note: {n}" for n in self.notes]
        for kind in KINDS:
            vals = self._kind(kind)
            if kind in self.kinds and vals:
                out += ["", TITLES[kind], format_table(vals, self.metric)]
        if self.quality is not None:
            out += ["", *self.quality_lines()]
        out += ["", "summary: " + self.summary()]
        return "\n".join(out)

    def print(self, file: TextIO | None = None) -> None:
        """Print :meth:`format` (to stdout by default)."""
        print(self.format(), file=file or sys.stdout)

    # ------------------------------------------------------------------ JSON / HTML
    def to_dict(self) -> dict[str, Any]:
        """Every number as JSON-compatible data (NaN becomes null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        ops = []
        for op in self.ops:
            d = asdict(op)
            for kind in KINDS:
                if kind in self.values:
                    d[kind] = {m: self.values[kind].get(m, {}).get(op.name) for m in METRICS}
            ops.append(d)
        return clean(
            {
                "format": "espq-analysis/1",
                "model": self.model,
                "metric": self.metric,
                "kinds": list(self.kinds),
                "batches": self.batches,
                "samples": self.samples,
                "seconds": self.seconds,
                "info": self.info,
                "summary": self.summary(),
                "notes": self.notes,
                "precision": self.precision,
                "ops": ops,
                "outputs": self.outputs,
                "histograms": [asdict(h) for h in self.histograms],
                "quality": self.quality,
            }
        )

    def to_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` to ``path``."""
        from espq.utils import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    def to_html(self, path: str | Path) -> None:
        """Write a self-contained HTML report (charts embedded as PNG)."""
        from espq.analysis.html import render_html
        from espq.utils import atomic_write_text

        atomic_write_text(path, render_html(self))
