"""Quality gate: after quantizing, name the outputs, channels and ops whose signal the quantization lost.

Checks (each finding is one line: the tensor/op, the measured damage, the fix espq can apply):

* ``dead_channels``: output channels (axis 1) whose quantized codes are all equal while the float values
  vary, or whose quantized values lost most of the signal (NSR >= :data:`CHANNEL_NSR`).
* ``clipped_output``: more than :data:`CLIP_FRACTION` of an output's float values lie more than
  :data:`CLIP_STEPS` steps outside the range its exponent can represent.
* ``mixed_range``: a Concat producing a graph output whose inputs differ in range by >= 2**4 (one step
  for all parts: the small part rounds to a few codes, e.g. YOLO's class scores next to box pixels).
* ``clipped_op``: clipping at the calibrated exponent removes more than :data:`CLIP_ENERGY` of an
  activation's signal energy (from the calibration histogram; no extra forward pass).
* ``argmax_disagreement``: a Softmax output whose argmax along the Softmax axis equals float's on
  fewer than :data:`ARGMAX_AGREEMENT` of the positions (counted where float does not pick its most
  common class when one class takes most positions: CTC's blank, a background class), e.g. an OCR
  recogniser at int8; the fix is int16.
* ``mask_disagreement``: a Sigmoid output whose values > 0.5 (the logit's sign) overlap float's with an
  IoU below :data:`MASK_IOU` (a segmentation / text-probability map).

The output checks run one float and one fake-quant forward on a few calibration samples (``samples``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from espq.errors import ConfigError, EspqError
from espq.ir.spec import S8

GATE_SAMPLES = 4  #: the last kept calibration samples the output checks run on (keeps the gate cheap)
CHANNEL_NSR = 0.5  #: a channel whose noise-to-signal ratio reaches this lost most of its signal
CLIP_FRACTION = 0.01  #: fraction of an output's values beyond its representable range that is flagged
CLIP_STEPS = 2  #: how many steps beyond the representable range a value must lie to count as clipped
CLIP_ENERGY = 0.5  #: fraction of an activation's signal energy removed by clipping that is flagged
MIXED_RANGE_RATIO = 16.0  #: range ratio of a Concat's inputs (2**4) flagged as mixed-range
ARGMAX_AGREEMENT = 0.5  #: a Softmax output's argmax agreeing with float's on fewer positions is flagged
MASK_IOU = 0.5  #: a Sigmoid output's > 0.5 mask overlapping float's with a lower IoU is flagged
MIN_POSITIONS = 16  #: decisions (argmax positions, mask pixels) needed before the two checks above judge
ON_DAMAGE = ("warn", "error", "fix")


class QualityError(EspqError):
    """The quality gate found damage and ``on_damage="error"`` was asked for."""


class QualityWarning(UserWarning):
    """The quality gate found damage (``on_damage="warn"``, the default)."""


@dataclass
class Finding:
    """One damaged tensor/op: ``kind``, ``tensor``, ``op`` (producing node), measured ``damage``,
    ``fix`` (what espq can apply) and ``fix_args`` (the setting that applies it)."""

    kind: str
    tensor: str
    op: str
    damage: str
    fix: str
    fix_args: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The finding as one line."""
        return f"{self.kind}: '{self.tensor}' (op '{self.op}'): {self.damage}; fix: {self.fix}"


@dataclass
class QualityReport:
    """The gate's findings on one quantized model."""

    findings: list[Finding] = field(default_factory=list)
    samples: int = 0
    #: with ``on_damage="fix"``: the findings of the first model whose fixes were applied
    applied: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was flagged."""
        return not self.findings

    def summary(self) -> str:
        """A few lines for the user: one per finding (or that the gate found nothing), then one per fix
        espq applied."""
        if self.ok:
            lines = [f"quality gate: no damaged output, channel or op found ({self.samples} sample(s))"]
        else:
            head = f"quality gate: {len(self.findings)} finding(s) on {self.samples} sample(s)"
            lines = [head, *("  " + f.line() for f in self.findings)]
        return "\n".join([*lines, *("  applied: " + a for a in self.applied)])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``lines``: each finding as its one line)."""
        return {
            "samples": self.samples,
            "findings": [asdict(f) for f in self.findings],
            "lines": [f.line() for f in self.findings],
            "applied": list(self.applied),
        }

    def to_json(self) -> str:
        """Deterministic JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _step(spec) -> float | None:
    if spec is None or spec.exponent is None or spec.per_channel:
        return None
    return 2.0**spec.exponent


def _producer_name(graph, tensor: str) -> str:
    node = graph.producer(tensor)
    return node.name if node is not None else "<input>"


def _ranges(ids: list[int], limit: int = 6) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _channels(x: np.ndarray) -> np.ndarray:
    """``x`` as (channels, values): axis 1 for ndim >= 2, else one channel."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 2:
        return x.reshape(1, -1)
    return np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def _output_fix(qm, tensor: str, mixed: Collection[str]) -> tuple[str, dict[str, Any]]:
    """The fix for a damaged graph output: int16 for its producer (what ``on_damage="fix"`` applies);
    for a mixed-range Concat also splitting the output per head at export."""
    node = qm.graph.producer(tensor)
    if node is None:
        return "quantize the input at 16 bits (bits=16)", {}
    int16 = f"int16 for op '{node.name}' (setting.precision={{'{node.name}': 16}})"
    split = "split the output per head at export (the Concat's parts need their own exponents)"
    if str(qm.plan.node_types.get(node.name, "")).endswith("16"):
        return (split, {"split_output": tensor}) if tensor in mixed else ("float for that op", {})
    if tensor in mixed:
        return f"{split} (or {int16})", {"split_output": tensor}
    return int16, {"precision": {node.name: 16}}


def _concat_outputs(graph) -> dict[str, Any]:
    """Graph outputs made by a Concat of several inputs: output -> the Concat node."""
    concats = {}
    for out in graph.outputs:
        node = graph.producer(out)
        if node is not None and node.op_type == "Concat" and len(node.inputs) > 1:
            concats[out] = node
    return concats


def _mixed_ranges(concats: dict[str, Any], fl: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """The Concat outputs whose parts differ in max |x| by >= :data:`MIXED_RANGE_RATIO`: output -> part ->
    max |x| (from the float values ``fl``)."""
    mixed = {}
    for out, node in concats.items():
        amax = {t: float(np.max(np.abs(fl[t]))) for t in node.inputs if t in fl}
        if len(amax) < 2:
            continue
        lo, hi = min(amax.values()), max(amax.values())
        if hi > 0 and (lo == 0 or hi / lo >= MIXED_RANGE_RATIO):
            mixed[out] = amax
    return mixed


def _ratio_text(amax: dict[str, float]) -> str:
    lo, hi = min(amax.values()), max(amax.values())
    detail = ", ".join(f"'{t}' max |x| {v:.3g}" for t, v in amax.items())
    return f"{'inf' if lo == 0 else f'{hi / lo:.0f}'}x ({detail})"


def mixed_range_outputs(graph, feeds: dict[str, Any]) -> dict[str, str]:
    """Graph outputs of the float ``graph`` that ``split_concat_outputs`` can split and whose Concat
    parts differ in range by >= :data:`MIXED_RANGE_RATIO` on ``feeds`` (one batch): output -> a
    description of the ranges (what ``quantize`` splits by default)."""
    from espq.sim.float import run_float

    concats = {}
    for out, node in _concat_outputs(graph).items():
        parts = [t for t in node.inputs if t]
        if all(t not in graph.initializers for t in parts) and len(set(parts)) == len(node.inputs):
            concats[out] = node
    if not concats:
        return {}
    parts = [t for node in concats.values() for t in node.inputs]
    fl = run_float(graph, feeds, outputs=list(dict.fromkeys(parts)))
    return {out: _ratio_text(amax) for out, amax in _mixed_ranges(concats, fl).items()}


def _run_batches(run: Callable[..., dict], feeds: list[dict[str, Any]], outputs: list[str]) -> dict:
    """``run`` on each batch of ``feeds`` (each as calibrated: a model whose batch size was folded into
    its shapes runs only so), outputs concatenated along axis 0."""
    results = [run(f, outputs=outputs) for f in feeds]
    return {k: np.concatenate([np.asarray(r[k]) for r in results]) for k in outputs}


def check_outputs(qm, feeds: dict[str, Any] | list[dict[str, Any]]) -> list[Finding]:
    """Output, channel and Concat checks of ``qm`` on ``feeds`` (a batch of a few samples, or a list of
    batches)."""
    graph = qm.graph
    feeds = feeds if isinstance(feeds, list) else [feeds]
    concats = _concat_outputs(graph)
    parts = [t for node in concats.values() for t in node.inputs if t not in graph.initializers]
    fl = _run_batches(qm.run_float, feeds, list(dict.fromkeys([*graph.outputs, *parts])))
    qu = _run_batches(qm.run, feeds, list(graph.outputs))
    findings: list[Finding] = []
    mixed = _mixed_ranges(concats, fl)
    for out, amax in mixed.items():
        damage = f"Concat parts differ in range by {_ratio_text(amax)}"
        findings.append(Finding("mixed_range", out, concats[out].name, damage, *_output_fix(qm, out, {out})))
    for out in graph.outputs:
        findings += _output_findings(qm, out, fl[out], qu[out], mixed)
        findings += _decision_findings(qm, out, fl[out], qu[out])
    return findings


def _whole_model_fix(qm) -> tuple[str, dict[str, Any]]:
    """int16 for every op quantized below 16 bits (the damage builds up through the network)."""
    nodes = {n: 16 for n, t in qm.plan.node_types.items() if t == S8}
    if not nodes:
        return "float for the ops with the largest error (analyse the model: espq analyse)", {}
    return (
        "int16 for the whole model (bits=16), or int16 for the layers with the largest error "
        "(espq.auto_mixed_precision)",
        {"precision": nodes},
    )


def _argmax_agreement(f: np.ndarray, q: np.ndarray, axis: int) -> tuple[float, int, str]:
    """(agreement, positions counted, which positions) of the argmax along ``axis``; positions where
    float picks its most common class are left out when that class takes most but not all of them."""
    fa, qa = f.argmax(axis=axis).ravel(), q.argmax(axis=axis).ravel()
    values, counts = np.unique(fa, return_counts=True)
    common, n_common = int(values[counts.argmax()]), int(counts.max())
    if fa.size / 2 < n_common < fa.size:
        keep = fa != common
        return float(np.mean(fa[keep] == qa[keep])), int(keep.sum()), f"where float's class is not {common}"
    return float(np.mean(fa == qa)), int(fa.size), "in all"


def _decision_findings(qm, out: str, f: np.ndarray, q: np.ndarray) -> list[Finding]:
    """Argmax agreement of Softmax outputs, > 0.5 mask IoU of Sigmoid outputs, against float."""
    node = qm.graph.producer(out)
    if node is None or f.ndim < 2:
        return []
    if node.op_type == "Softmax":
        axis = int(node.attr("axis", -1))
        agree, n, where = _argmax_agreement(f, q, axis)
        if n >= MIN_POSITIONS and agree < ARGMAX_AGREEMENT:
            everywhere = float(np.mean(f.argmax(axis=axis) == q.argmax(axis=axis)))
            damage = (
                f"argmax along axis {axis} equals float's on {agree:.0%} of {n} positions {where} "
                f"({everywhere:.0%} of all {f.size // f.shape[axis]})"
            )
            return [Finding("argmax_disagreement", out, node.name, damage, *_whole_model_fix(qm))]
    if node.op_type == "Sigmoid":
        a, b = f > 0.5, q > 0.5
        union = int(np.logical_or(a, b).sum())
        if int(a.sum()) >= MIN_POSITIONS and union:
            iou = float(np.logical_and(a, b).sum() / union)
            if iou < MASK_IOU:
                damage = (
                    f"values > 0.5 overlap float's with IoU {iou:.2f} ({int(a.sum())} float, "
                    f"{int(b.sum())} quantized of {a.size})"
                )
                return [Finding("mask_disagreement", out, node.name, damage, *_whole_model_fix(qm))]
    return []


def _output_findings(qm, out: str, f: np.ndarray, q: np.ndarray, mixed: Collection[str]) -> list[Finding]:
    spec = qm.plan.tensors.get(out)
    step = _step(spec)
    op = _producer_name(qm.graph, out)
    found = []
    fc, qc = _channels(f), _channels(q)
    varying = fc.max(axis=1) > fc.min(axis=1)
    constant_q = qc.max(axis=1) == qc.min(axis=1)
    energy = np.sum(fc**2, axis=1)
    nsr = np.where(energy > 0, np.sum((qc - fc) ** 2, axis=1) / np.maximum(energy, 1e-300), 0.0)
    dead = [int(c) for c in np.nonzero(varying & (constant_q | (nsr >= CHANNEL_NSR)))[0]]
    if dead:
        frange = float(np.max(fc[dead].max(axis=1) - fc[dead].min(axis=1)))
        step_text = f" < step {step:g}" if step is not None and frange < step else ""
        damage = (
            f"{len(dead)} of {fc.shape[0]} channel(s) lost their signal (channels {_ranges(dead)}; "
            f"{int(np.sum(constant_q[dead]))} with all codes equal, "
            f"float range up to {frange:.3g}{step_text}, "
            f"worst NSR {float(np.max(nsr[dead])):.2f})"
        )
        found.append(Finding("dead_channels", out, op, damage, *_output_fix(qm, out, mixed)))
    if step is not None:
        lo, hi = spec.qmin * step, spec.qmax * step
        # beyond 2 steps: a sigmoid's 1.0 saturating at int8's 127/128 loses less than one step
        frac = float(np.mean((f < lo - CLIP_STEPS * step) | (f > hi + CLIP_STEPS * step)))
        if frac > CLIP_FRACTION:
            damage = (
                f"{frac:.1%} of values outside [{lo:g}, {hi:g}] (float range [{f.min():.3g}, {f.max():.3g}])"
            )
            found.append(Finding("clipped_output", out, op, damage, *_output_fix(qm, out, mixed)))
    return found


def _clipped_energy(st, limit: float) -> float:
    """Fraction of the |x|**2 energy of the histogram ``st`` beyond ``limit`` that clipping removes."""
    if st.range <= 0 or st.count == 0:
        return 0.0
    hist = st.hist.double()
    width = st.range / hist.numel()
    centers = (torch.arange(hist.numel(), dtype=torch.float64) + 0.5) * width
    total = float(torch.sum(hist * centers**2))
    lost = float(torch.sum(hist * torch.clamp(centers - limit, min=0.0) ** 2))
    return lost / total if total > 0 else 0.0


def check_clipping(qm) -> list[Finding]:
    """Activations whose calibrated exponent clips away most of their signal (calibration histograms)."""
    found = []
    for name, st in sorted(qm.stats.items()):
        spec = qm.plan.tensors.get(name)
        step = _step(spec)
        if step is None or name in qm.graph.initializers or not math.isfinite(st.max):
            continue
        limit = spec.qmax * step
        amax = max(abs(st.min), abs(st.max))
        if amax <= limit:
            continue
        lost = _clipped_energy(st, limit)
        if lost > CLIP_ENERGY:
            damage = (
                f"clipped at {limit:.3g} while max |x| is {amax:.3g}; {lost:.0%} of its signal energy lost"
            )
            fix = f"another observer (setting.layer_calib_algorithm={{'{name}': 'minmax'}})"
            op = _producer_name(qm.graph, name)
            found.append(
                Finding("clipped_op", name, op, damage, fix, {"layer_calib_algorithm": {name: "minmax"}})
            )
    return found


def check_quality(qm, feeds: dict[str, Any] | list[dict[str, Any]] | None) -> QualityReport:
    """The gate's report on ``qm``: clipping from its calibration statistics and, with ``feeds`` (a batch
    of a few samples by input name, or a list of batches), the output checks. Stored as ``qm.quality``."""
    findings = check_clipping(qm)
    samples = 0
    if feeds:
        feeds = feeds if isinstance(feeds, list) else [feeds]
        findings = check_outputs(qm, feeds) + findings
        samples = sum(int(np.asarray(next(iter(f.values()))).shape[0]) for f in feeds)
    qm.quality = QualityReport(findings, samples)
    return qm.quality


def gate_feeds(batches: list[dict[str, np.ndarray]], samples: int = GATE_SAMPLES) -> list[dict] | None:
    """The last ``samples`` samples of ``batches`` (the calibration batches espq kept), as batches of the
    calibrated batch size (the last batches; the earliest one trimmed to the count)."""
    if not batches:
        return None
    picked: list[dict] = []
    have = 0
    for b in reversed(batches):
        n = int(np.asarray(next(iter(b.values()))).shape[0])
        take = min(n, samples - have)
        picked.insert(0, {k: np.asarray(v)[n - take :] for k, v in b.items()})
        have += take
        if have >= samples:
            break
    return picked


def _fix_setting(setting, findings: list[Finding]):
    """A copy of ``setting`` with every finding's applicable fix merged in, or None when none applies."""
    import copy

    fixed = copy.deepcopy(setting)
    changed = False
    for f in findings:
        for node, p in f.fix_args.get("precision", {}).items():
            if fixed.precision.get(node) != p:
                fixed.precision[node], changed = p, True
        for t, algo in f.fix_args.get("layer_calib_algorithm", {}).items():
            if fixed.layer_calib_algorithm.get(t) != algo:
                fixed.layer_calib_algorithm[t], changed = algo, True
    return fixed if changed else None


def gate(qm, batches: list[dict[str, np.ndarray]], on_damage: str, setting, refit: Callable[..., Any]):
    """Run the gate on ``qm`` and act on it: "warn" warns with the findings, "error" raises
    :class:`QualityError`, "fix" re-quantizes once with the findings' fixes (``refit(setting, splits)``:
    int16 for the op, another observer, mixed-range Concat outputs split into their parts) and keeps that
    model when it has fewer findings, warning about what is left."""
    if on_damage not in ON_DAMAGE:
        raise ConfigError(f"on_damage must be one of {ON_DAMAGE}, got {on_damage!r}")
    feeds = gate_feeds(batches)
    report = check_quality(qm, feeds)
    if report.ok:
        return qm
    if on_damage == "error":
        raise QualityError(report.summary() + "\n(quantize(..., on_damage='fix') applies these fixes)")
    if on_damage == "fix":
        fixed_setting = _fix_setting(setting, report.findings)
        splits = sorted({f.fix_args["split_output"] for f in report.findings if "split_output" in f.fix_args})
        if fixed_setting is not None or splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", QualityWarning)
                candidate = refit(fixed_setting or setting, splits)
            again = check_quality(candidate, feeds)
            if len(again.findings) < len(report.findings):
                candidate.quality.applied = [f.line() for f in report.findings if f.fix_args]
                qm, report = candidate, again
    if not report.ok:
        warnings.warn(report.summary(), QualityWarning, stacklevel=3)
    return qm


__all__ = [
    "Finding",
    "QualityWarning",
    "gate",
    "QualityError",
    "QualityReport",
    "check_clipping",
    "check_outputs",
    "check_quality",
    "gate_feeds",
]
