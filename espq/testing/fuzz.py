"""Differential chain fuzzer: random small ONNX graphs run three ways must agree.

A graph is described by a :class:`GraphSpec` (input shape + a list of ``(op, seed)`` steps); the
builder derives every shape and attribute from the step's own seed and the running tensor's shape,
so dropping a step or shrinking the input still gives a valid graph (this is what :func:`shrink`
relies on). Each graph is quantized with :func:`espq.quantize` (2 random calibration batches),
exported with test values, and then

* the fake-quant model (``qm.run``) and the integer runner (``espq.run_espdl``) run a fresh input;
  the outputs, as codes at the output exponent, must be equal (int8) or within 1 LSB (int16);
* :func:`espq.sim.integer.check_test_values` must pass on the written file;
* no output may be NaN.

A graph the capability check or the exporter rejects (an :class:`espq.errors.UnsupportedOpError`) is
recorded as ``rejected`` with the reason, not as a failure.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPS_4D = (
    "Conv",
    "DepthwiseConv",
    "Add",
    "Sub",
    "Mul",
    "Relu",
    "Clip",
    "Sigmoid",
    "Concat",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Transpose",
    "Flatten",
)
OPS_2D = ("Gemm", "MatMul", "Add", "Mul", "Relu", "Sigmoid", "Clip")
# a wider set (``extended=True``): activations, Neg, PRelu, Pad, reductions
EXTRA_OPS = (
    "LeakyRelu",
    "PRelu",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Elu",
    "Neg",
    "Pad",
    "ReduceMean",
    "ReduceMax",
)
ALL_OPS = tuple(dict.fromkeys(OPS_4D + OPS_2D + EXTRA_OPS))
TARGETS = ("esp32p4", "esp32s3", "c")
BITS = (8, 16)


@dataclass
class GraphSpec:
    """Input shape ``[1, C, H, W]`` and the steps ``(op, seed)`` of a random graph."""

    shape: list[int]
    steps: list[tuple[str, int]]

    def to_json(self) -> dict:
        """JSON-ready form (``steps`` as lists)."""
        return {"shape": list(self.shape), "steps": [list(s) for s in self.steps]}

    @staticmethod
    def from_json(d: dict) -> GraphSpec:
        """Inverse of :meth:`to_json`."""
        return GraphSpec([int(v) for v in d["shape"]], [(str(o), int(s)) for o, s in d["steps"]])


@dataclass
class FuzzResult:
    """Outcome of one graph on one target and width.

    ``status``: ``ok``, ``mismatch`` (run/espdl/test-value disagreement or NaN), ``rejected`` (the
    capability check refused it; ``detail`` holds the reason) or ``error`` (any other exception).
    """

    seed: int
    target: str
    bits: int
    ops: list[str]
    status: str
    detail: str = ""
    codes_differ: int = 0
    max_code_diff: int = 0
    spec: dict = field(default_factory=dict)


def random_spec(seed: int, min_nodes: int = 2, max_nodes: int = 6, extended: bool = False) -> GraphSpec:
    """A random :class:`GraphSpec` for ``seed`` (same seed → same spec); ``extended`` adds EXTRA_OPS."""
    rng = random.Random(seed)
    shape = [1, rng.randint(1, 6), rng.randint(2, 8), rng.randint(2, 8)]
    n = rng.randint(min_nodes, max_nodes)
    steps, flat = [], False
    for _ in range(n):
        op = rng.choice((OPS_2D if flat else OPS_4D) + (EXTRA_OPS if extended else ()))
        flat = flat or op == "Flatten"
        steps.append((op, rng.randrange(1 << 30)))
    return GraphSpec(shape, steps)


class _Builder:
    def __init__(self, shape: list[int]):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: dict[str, np.ndarray] = {}
        self.shapes: dict[str, list[int]] = {"x": list(shape)}
        self.order: list[str] = ["x"]
        self.ops: list[str] = []

    def const(self, arr: np.ndarray) -> str:
        name = f"c{len(self.inits)}"
        self.inits[name] = np.asarray(arr, np.float32)  # callers may replace it (int64 pads/axes)
        return name

    def add(self, op: str, inputs: list[str], shape: list[int], label: str | None = None, **attrs) -> None:
        out = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{len(self.nodes)}_{op}", **attrs))
        self.shapes[out] = list(shape)
        self.order.append(out)
        self.ops.append(label or op)

    def same_shape_earlier(self, cur: str, rng: random.Random, match: slice = slice(None)) -> str | None:
        want = self.shapes[cur][match]
        cands = [t for t in self.order if t != cur and self.shapes[t][match] == want]
        if match == slice(None):
            cands = [t for t in cands if len(self.shapes[t]) == len(self.shapes[cur])]
        return rng.choice(cands) if cands else None


def _step(b: _Builder, op: str, seed: int) -> None:
    """Append ``op`` on the latest tensor; a step that does not fit the current shape is skipped."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    cur = b.order[-1]
    s = b.shapes[cur]
    four = len(s) == 4
    if op in ("Conv", "DepthwiseConv") and four:
        c, h, w = s[1], s[2], s[3]
        k = rng.choice([1, 3]) if min(h, w) >= 3 else 1
        pad = rng.choice([0, k // 2])
        stride = rng.choice([1, 2]) if min(h, w) >= 4 else 1
        groups = c if op == "DepthwiseConv" else 1
        oc = c if op == "DepthwiseConv" else rng.randint(1, 8)
        wgt = nrng.standard_normal((oc, c // groups, k, k)) * rng.choice([0.1, 0.5, 1.0])
        ins = [cur, b.const(wgt)]
        if rng.random() < 0.8:
            ins.append(b.const(nrng.standard_normal(oc) * 0.3))
        oh, ow = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        b.add(
            "Conv",
            ins,
            [1, oc, oh, ow],
            label=op,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride] * 2,
            group=groups,
        )
    elif op in ("Add", "Sub", "Mul"):
        other = b.same_shape_earlier(cur, rng) if rng.random() < 0.5 else None
        if other is None:  # broadcasting constant: per-channel, per-last-dim or scalar-like
            bshape = [1] * len(s)
            pick = rng.randrange(3)
            if pick == 0:
                bshape[1] = s[1]
            elif pick == 1:
                bshape[-1] = s[-1]
            scale = 0.5 if op == "Mul" else 1.0
            other = b.const(nrng.standard_normal(bshape) * scale + (1.0 if op == "Mul" else 0.0))
        ins = [cur, other] if rng.random() < 0.7 else [other, cur]
        b.add(op, ins, s)
    elif op in ("Relu", "Sigmoid", "Tanh", "HardSwish", "Neg"):
        b.add(op, [cur], s)
    elif op in ("LeakyRelu", "Elu"):
        b.add(op, [cur], s, alpha=rng.choice([0.01, 0.1, 0.2, 1.0]))
    elif op == "HardSigmoid":
        b.add(op, [cur], s, alpha=rng.choice([0.2, 1 / 6]), beta=0.5)
    elif op == "PRelu":
        slope = [1] * len(s)
        slope[1] = s[1]
        b.add(op, [cur, b.const(nrng.uniform(-0.5, 0.5, slope[1:]))], s)
    elif op == "Pad" and four:
        p = [0, 0, rng.randint(0, 2), rng.randint(0, 2), 0, 0, rng.randint(0, 2), rng.randint(0, 2)]
        pads = b.const(np.asarray(p, np.float32))
        b.inits[pads] = np.asarray(p, np.int64)
        b.add(op, [cur, pads], [1, s[1], s[2] + p[2] + p[6], s[3] + p[3] + p[7]])
    elif op in ("ReduceMean", "ReduceMax") and four:
        axes = rng.choice([[2, 3], [1], [3]])
        axes_t = b.const(np.zeros(len(axes)))
        b.inits[axes_t] = np.asarray(axes, np.int64)
        b.add(op, [cur, axes_t], [1 if i in axes else d for i, d in enumerate(s)], keepdims=1)
    elif op == "Clip":
        lo, hi = rng.choice([(0.0, 6.0), (-1.0, 1.0), (0.0, 1.0)])
        b.add(op, [cur, b.const(np.float32(lo)), b.const(np.float32(hi))], s)
    elif op == "Concat" and four:
        other = b.same_shape_earlier(cur, rng, slice(2, None))
        if other is not None and b.shapes[other][0] == 1 and len(b.shapes[other]) == 4:
            c2 = b.shapes[other][1]
            b.add(op, [cur, other], [1, s[1] + c2, s[2], s[3]], axis=1)
    elif op in ("MaxPool", "AveragePool") and four and min(s[2], s[3]) >= 2:
        b.add(op, [cur], [1, s[1], s[2] // 2, s[3] // 2], kernel_shape=[2, 2], strides=[2, 2])
    elif op == "GlobalAveragePool" and four:
        b.add(op, [cur], [1, s[1], 1, 1])
    elif op == "Transpose" and four:
        b.add(op, [cur], [1, s[1], s[3], s[2]], perm=[0, 1, 3, 2])
    elif op == "Flatten" and four:
        b.add(op, [cur], [1, s[1] * s[2] * s[3]], axis=1)
    elif op in ("Gemm", "MatMul") and not four:
        k, n = s[1], rng.randint(1, 12)
        wgt = nrng.standard_normal((k, n)) / np.sqrt(k)
        if op == "Gemm":
            b.add(op, [cur, b.const(wgt), b.const(nrng.standard_normal(n) * 0.3)], [1, n])
        else:
            b.add(op, [cur, b.const(wgt)], [1, n])


def build(spec: GraphSpec) -> tuple[onnx.ModelProto, list[str]]:
    """The ONNX model (opset 18) for ``spec`` and the op labels of the nodes it holds."""
    b = _Builder(spec.shape)
    for op, seed in spec.steps:
        _step(b, op, seed)
    if not b.nodes:  # every step skipped: keep a valid graph
        b.add("Relu", ["x"], spec.shape)
    out = b.order[-1]
    g = helper.make_graph(
        b.nodes,
        "fuzz",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, spec.shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, b.shapes[out])],
        initializer=[numpy_helper.from_array(v, k) for k, v in b.inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], producer_name="espq-fuzz")
    m.ir_version = 8
    return m, b.ops


def run_case(
    spec: GraphSpec, target: str, bits: int, seed: int = 0, workdir: str | None = None
) -> FuzzResult:
    """Quantize, export and compare one graph on one target/width; never raises."""
    import espq
    from espq.errors import UnsupportedOpError
    from espq.sim.integer import check_test_values

    model, ops = build(spec)
    res = FuzzResult(seed, target, bits, ops, "ok", spec=spec.to_json())
    rng = np.random.default_rng(seed)
    calib = [rng.standard_normal(spec.shape).astype(np.float32) for _ in range(2)]
    x = rng.standard_normal(spec.shape).astype(np.float32)
    try:
        qm = espq.quantize(model, calib, target=target, bits=bits, progress=False)
    except UnsupportedOpError as exc:
        res.status, res.detail = "rejected", str(exc).splitlines()[0][:200]
        return res
    except Exception as exc:  # noqa: BLE001 - the fuzzer records every failure
        res.status, res.detail = "error", f"quantize: {type(exc).__name__}: {exc}"[:300]
        return res
    try:
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            path = Path(tmp) / "m.espdl"
            qm.export(path, export_test_values=True, export_config=False)
            out = qm.graph.outputs[0]
            ours = qm.run(x)[out]
            chip = espq.run_espdl(path, x)[out]
            report = check_test_values(path)
        e = qm.plan.tensors[out].exponent
    except UnsupportedOpError as exc:  # the exporter refused a pattern the chip cannot run
        res.status, res.detail = "rejected", "export: " + str(exc).splitlines()[0][:200]
        return res
    except Exception as exc:  # noqa: BLE001
        res.status, res.detail = "error", f"export/run: {type(exc).__name__}: {exc}"[:300]
        return res
    if ours.shape != chip.shape:
        res.status, res.detail = "mismatch", f"output shape: run {ours.shape} vs espdl {chip.shape}"
        return res
    if np.isnan(ours).any() or np.isnan(chip).any():
        res.status, res.detail = "mismatch", "NaN in output"
        return res
    diff = np.abs(np.round(ours / 2.0**e).astype(np.int64) - np.round(chip / 2.0**e).astype(np.int64))
    tol = 0 if bits == 8 else 1
    res.codes_differ = int((diff > tol).sum())
    res.max_code_diff = int(diff.max()) if diff.size else 0
    problems = []
    if res.codes_differ:
        problems.append(
            f"run vs espdl: {res.codes_differ}/{diff.size} codes differ (max {res.max_code_diff})"
        )
    if not report.ok:
        bad = [t for t in report.tensors if not t.ok]
        problems.append("test values: " + ", ".join(f"{t.name} {t.mismatches}/{t.numel}" for t in bad))
    if problems:
        res.status, res.detail = "mismatch", "; ".join(problems)
    return res


def shrink(
    spec: GraphSpec,
    target: str,
    bits: int,
    seed: int = 0,
    fails: Callable[[GraphSpec], bool] | None = None,
) -> GraphSpec:
    """Delta-debug a failing ``spec``: drop steps, then shrink input dims, while the failure stays.

    ``fails`` decides what a failure is (default: :func:`run_case` reports a mismatch or an error)."""
    if fails is None:

        def fails(s: GraphSpec) -> bool:
            return run_case(s, target, bits, seed).status in ("mismatch", "error")

    cur = GraphSpec(list(spec.shape), list(spec.steps))
    changed = True
    while changed:
        changed = False
        for i in range(len(cur.steps)):
            cand = GraphSpec(cur.shape, cur.steps[:i] + cur.steps[i + 1 :])
            if cand.steps and fails(cand):
                cur, changed = cand, True
                break
        for d in (1, 2, 3):
            while cur.shape[d] > 1:
                shape = list(cur.shape)
                shape[d] -= 1
                cand = GraphSpec(shape, cur.steps)
                if not fails(cand):
                    break
                cur, changed = cand, True
    return cur


def save_regression(directory: str | Path, result: FuzzResult, spec: GraphSpec) -> Path:
    """Write ``<name>.onnx`` and ``<name>.json`` (spec, seed, target, bits, detail); returns the json path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    name = f"{'_'.join(build(spec)[1])}_{result.target}_s{result.bits}_{result.seed}"
    model, _ = build(spec)
    (d / f"{name}.onnx").write_bytes(model.SerializeToString())
    meta = {"seed": result.seed, "target": result.target, "bits": result.bits, "spec": spec.to_json()}
    meta["detail"] = result.detail
    path = d / f"{name}.json"
    path.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return path


def fuzz(
    n: int,
    seed0: int = 0,
    targets: tuple[str, ...] = TARGETS,
    bits: tuple[int, ...] = BITS,
    extended: bool = False,
) -> list[FuzzResult]:
    """``n`` graphs (seeds ``seed0 .. seed0+n-1``); graph ``i`` on target/width ``i mod 6``."""
    combos = [(t, b) for t in targets for b in bits]
    out = []
    for i in range(seed0, seed0 + n):
        t, b = combos[i % len(combos)]
        out.append(run_case(random_spec(i, extended=extended), t, b, seed=i))
    return out


def coverage_table(results: list[FuzzResult]) -> str:
    """Markdown table op × target × bits: graphs containing the op, mismatches (+errors), rejected."""
    cells: dict[tuple[str, str, int], list[int]] = {}
    for r in results:
        for op in set(r.ops):
            c = cells.setdefault((op, r.target, r.bits), [0, 0, 0])
            c[0] += 1
            c[1] += r.status in ("mismatch", "error")
            c[2] += r.status == "rejected"
    cols = [(t, b) for t in TARGETS for b in BITS]
    lines = ["| op | " + " | ".join(f"{t} s{b}" for t, b in cols) + " |"]
    lines.append("|---" * (len(cols) + 1) + "|")
    for op in sorted({k[0] for k in cells}):
        row = []
        for t, b in cols:
            g, m, rj = cells.get((op, t, b), [0, 0, 0])
            row.append(f"{g}/{m}/{rj}")
        lines.append(f"| {op} | " + " | ".join(row) + " |")
    lines.append("cells: graphs/mismatches+errors/rejected")
    return "\n".join(lines)


def as_dict(r: FuzzResult) -> dict:
    """JSON-ready result record."""
    return asdict(r)
