"""Self-contained HTML report: model summary, the three per-op error charts, per-op table, per-tensor
histograms with the clip level of the chosen exponent, mixed-precision settings. Charts are matplotlib
PNGs embedded as base64; the page loads nothing else."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from espq.analysis.report import AnalysisReport

from espq.analysis.kinds import KINDS, TITLES
from espq.analysis.metrics import LABELS

COLORS = {"graphwise": "#c44", "layerwise": "#46a", "isolated": "#4a4"}
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}.summary{background:#fff6d5;padding:.6em;border-radius:4px}
.grid{display:flex;flex-wrap:wrap;gap:6px}.grid figure{margin:0}.note{color:#a33}
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def _error_chart(report: AnalysisReport) -> str | None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if getattr(report, k)]
    if not kinds:
        return None
    names = [op.name for op in report.ops]
    pct = report.metric != "mse"
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(4.2 * len(kinds), 0.5 + 0.18 * len(names)), sharey=True, squeeze=False
    )
    for ax, kind in zip(axes[0], kinds):
        vals = getattr(report, kind)
        ys = [vals.get(n, math.nan) * (100 if pct else 1) for n in names]
        ax.barh(
            range(len(names)), ys, color={"graphwise": "#c44", "layerwise": "#46a", "isolated": "#4a4"}[kind]
        )
        ax.set_title(kind, fontsize=10)
        ax.set_xlabel(LABELS[report.metric] + (" (%)" if pct else ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(names)))
    axes[0][0].set_yticklabels(names)
    axes[0][0].invert_yaxis()
    return _png(fig)


def _histogram_png(h) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    counts = np.asarray(h.counts, dtype=np.float64)
    edges = np.linspace(0.0, h.range, counts.size + 1)
    fig, ax = plt.subplots(figsize=(3.2, 1.9))
    ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="#789", log=True)
    if h.clip is not None:
        ax.axvline(h.clip, color="#c00", lw=1)
    title = f"{h.tensor[:40]}\n|x| max {max(abs(h.min), abs(h.max)):.3g}"
    if h.exponent is not None:
        title += f", exp {h.exponent} (int{h.bits}), clip {h.clip:.3g}"
    ax.set_title(title, fontsize=7)
    ax.tick_params(labelsize=6)
    return _png(fig)


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="{"l" if i < left else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v, pct: bool) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v * 100:.3f} %" if pct else f"{v:.4g}"


def _short(v) -> str:
    if isinstance(v, list):
        return f"{min(v)}…{max(v)} ({len(v)} ch)" if v else "[]"
    return "–" if v is None else html.escape(str(v))


def render_html(report: AnalysisReport) -> str:
    """The whole report as one HTML document."""
    e = html.escape
    m = report.model
    pct = report.metric != "mse"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>espq analysis – {e(str(m.get('name')))}</title><style>{CSS}</style></head><body>",
        f"<h1>Quantization error analysis: {e(str(m.get('name')))}</h1>",
        f'<p class="summary" id="summary">{e(report.summary())}</p>',
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in report.notes]
    if report.quality is not None:
        parts.append('<h2 id="quality">Quality gate</h2>')
        lines = report.quality_lines()
        parts.append(f"<p>{e(lines[0])}</p>")
        items = [*report.quality["lines"], *("applied: " + a for a in report.quality["applied"])]
        if items:
            parts.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in items) + "</ul>")
    parts.append('<h2 id="model">Model</h2>')
    rows = [
        [e(k), e(", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict) else str(v))]
        for k, v in m.items()
    ]
    rows += [
        [
            "analysis",
            f"{report.batches} batch(es), {report.samples} sample(s), metric {e(LABELS[report.metric])}",
        ]
    ]
    parts.append(_table(["property", "value"], rows, left=2))

    parts.append('<h2 id="errors">Per-op error</h2>')
    parts += [f"<p><b>{k}</b>: {e(TITLES[k])}</p>" for k in KINDS if getattr(report, k)]
    chart = _error_chart(report)
    if chart:
        parts.append(_img(chart, "per-op error charts"))
    headers = ["op", "type", "quant", "in exp", "w exp", "out exp", "clip %"] + [
        k for k in KINDS if getattr(report, k)
    ]
    op_rows = []
    for op in report.ops:
        row = [
            e(op.name),
            e(op.op_type + (f"+{op.fused_relu}" if op.fused_relu else "")),
            e(op.quant_type),
            _short(list(op.input_exponents.values())[0] if op.input_exponents else None),
            _short(op.weight_exponent),
            _short(op.output_exponent),
            "–" if op.clip_ratio is None else f"{op.clip_ratio * 100:.3f}",
        ]
        row += [_fmt(getattr(report, k).get(op.name), pct) for k in KINDS if getattr(report, k)]
        op_rows.append(row)
    parts.append(_table(headers, op_rows, left=3))

    parts.append('<h2 id="histograms">Calibration histograms of |x| (log scale; red: clip level)</h2>')
    if report.histograms:
        parts.append('<div class="grid">')
        parts += [f"<figure>{_img(_histogram_png(h), h.tensor)}</figure>" for h in report.histograms]
        parts.append("</div>")
    else:
        parts.append("<p>No calibration statistics (the model was quantized from a saved plan).</p>")

    parts.append('<h2 id="precision">Mixed precision</h2>')
    if report.precision:
        prow = [[e(n), e(t)] for n, t in sorted(report.precision.items())]
        parts.append(f"<p>Nodes not at the default {e(str(m.get('bits')))}-bit width:</p>")
        parts.append(_table(["node", "quant_type"], prow, left=2))
    else:
        parts.append(f"<p>All quantized nodes run at {e(str(m.get('bits')))} bits.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
