"""HTML page of an AutoQuant search: the chosen setting and why, the finalists, the Pareto front
(error x latency x size) and every proxy run. Self-contained (inline SVG, no scripts); the same search
gives the same bytes (no timestamps or wall times)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from espq.utils import atomic_write_text

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child"
    "{text-align:left}tr.best{background:#dfd}tr.front td:first-child{font-weight:bold}"
)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(headers: list[str], rows: list[tuple[str, list[Any]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{_fmt(v)}</td>" for v in cells) + "</tr>" for cls, cells in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _scatter(finals: list[dict[str, Any]], front: set[str], best: str) -> str:
    """Score against parameter bytes, one dot per finalist (front: filled, chosen: green)."""
    if not finals:
        return ""
    xs = [float(r["param_bytes"]) for r in finals]
    ys = [float(r["score"]) for r in finals]
    w, h, pad = 520, 300, 50

    def scale(v: float, lo: float, hi: float, size: int) -> float:
        return pad + (size - 2 * pad) * (0.5 if hi == lo else (v - lo) / (hi - lo))

    dots = []
    for r, x, y in zip(finals, xs, ys):
        cx = scale(x, min(xs), max(xs), w)
        cy = h - scale(y, min(ys), max(ys), h)
        colour = "#2a2" if r["hash"] == best else ("#225" if r["hash"] in front else "none")
        dots.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}" stroke="#225">'
            f"<title>{html.escape(r['label'])}: score {r['score']:.4g}, {r['param_bytes']} B</title></circle>"
        )
    axes = (
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="#888"/>'
        f'<text x="{w / 2}" y="{h - 10}" text-anchor="middle">parameter bytes '
        f"({min(xs):.0f} – {max(xs):.0f})</text>"
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle">score '
        f"({min(ys):.3g} – {max(ys):.3g})</text>"
    )
    return f'<svg width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">{axes}{"".join(dots)}</svg>'


def render(result: Any, budgets: dict[str, Any]) -> str:
    """The report page of ``result`` (:class:`espq.autoquant.api.AutoQuantResult`)."""
    best = result.best
    finals = [r for r in result.summary if r["stage"] == "final"]
    front = {r["hash"] for r in result.front}
    proxy = [r for r in result.summary if r["stage"] == "proxy"]
    direction = "higher" if result.score_direction == "maximize" else "lower"
    int16 = ", ".join(best["int16_layers"]) or "none"
    limits = ", ".join(f"{k} = {v}" for k, v in budgets.items() if v is not None) or "none"
    why = (
        f"<p>Chosen: <b>{html.escape(best['label'])}</b> — the best score ({direction} is better) of "
        f"{len(finals)} finalist(s) within the budgets ({html.escape(limits)}); score {_fmt(best['score'])}, "
        f"output NSR {_fmt(best['nsr'])}, {best['param_bytes']} parameter bytes, predicted latency "
        f"{_fmt(best.get('latency_ms'))} ms, int16 layers: {html.escape(int16)}."
        f" Files: {html.escape(best['folder'])}/model.espdl (.info, .json).</p>"
    )
    cols = ["configuration", "score", "output NSR", "param bytes", "latency ms", "int16 layers", "on front"]
    final_rows = [
        (
            "best" if r["hash"] == best["hash"] else ("front" if r["hash"] in front else ""),
            [r["label"], r["score"], r["nsr"], r["param_bytes"], r.get("latency_ms"), len(r["int16_layers"]),
             "yes" if r["hash"] in front else ""],
        )
        for r in sorted(finals, key=lambda r: r["index"])
    ]  # fmt: skip
    proxy_rows = [
        ("", [r["label"], r["batches"], r["nsr"], r["param_bytes"], r.get("latency_ms")])
        for r in sorted(proxy, key=lambda r: (r["batches"], r["nsr"], r["index"]))
    ]
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>espq AutoQuant</title>"
        f"<style>{_STYLE}</style></head><body><h1>espq AutoQuant</h1>",
        f"<p>{len({r['hash'] for r in result.summary})} configuration(s), {len(result.summary)} run(s) "
        f"recorded in {html.escape(str(result.run_dir))}.</p>",
        why,
        "<h2>Finalists (full calibration, scored)</h2>",
        _table(cols, final_rows),
        "<h2>Pareto front: score × latency × size</h2>",
        _scatter(finals, front, best["hash"]),
        "<h2>Proxy runs (successive halving)</h2>",
        _table(
            ["configuration", "calibration batches", "output NSR", "param bytes", "latency ms"], proxy_rows
        ),
        "</body></html>\n",
    ]
    return "".join(parts)


def write_report(result: Any, path: str | Path, budgets: dict[str, Any]) -> Path:
    """Write :func:`render` to ``path`` atomically; returns the path."""
    p = Path(path)
    atomic_write_text(p, render(result, budgets))
    return p


__all__ = ["render", "write_report"]
