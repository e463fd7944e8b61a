"""Add/Sub alignment rule (issue 13 finding 4): ESP-PPQ's 'Align to Output' vs espq's covering rule.

ESP-PPQ fits an Add/Sub's common exponent to the output range only; espq raises it towards what the
aligned inputs need when that at least halves the estimated error (``COVER_GAIN`` 0.5,
:func:`espq.quant.calibrate.covering_exponent`). Each row quantizes the same model under ESP-PPQ's rule
(``COVER_GAIN = -1``: never raise), espq's, and ``COVER_GAIN = 1`` (raise on any estimated gain) in one
process and prints the graph output's NSR against the float model, the worst NSR and the NaN share of
the LayerNorms' Div outputs (the normalised tensors), and how many Add/Sub exponents differ from
ESP-PPQ's rule:

* ``layernorm-ch``: a decomposed LayerNorm over the channel axis of [N, 8, 6, 6] (not fusable: ESP-DL's
  LayerNormalization normalises trailing axes), input offset 3.0 (the mean dominates each value);
* ``hey_mycroft``: openWakeWord's head (openwakeword==0.5.1 wheel in ~/.cache/espq-realmodels) with the
  LayerNorm fusion switched off, random [1, 16, 96] inputs as calibration;
* ``resnet20``: CIFAR-10 ResNet-20 (../shared), 8 × 32 calibration images, NSR on 500 validation images.

Usage: ``python bench/add_alignment.py [--targets esp32s3 esp32p4] [--limit 500]``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

import espq  # noqa: E402
import espq.quant.calibrate as calibrate  # noqa: E402
from espq.ir.passes import CANONICAL_PASSES, canonicalize, fuse_layernorm  # noqa: E402

RULES = {"esp-ppq (output only)": -1.0, "espq (gain 0.5)": 0.5, "gain 1.0": 1.0}
CACHE = Path("~/.cache/espq-realmodels").expanduser()


def layernorm_channel(n: int = 8) -> onnx.ModelProto:
    """x -> Conv 1x1 -> (+3.0) -> decomposed LayerNorm over axis 1 -> Conv 1x1."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (n, 3, 1, 1)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.full(n, 3.0, np.float32), "b1"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (4, n, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1"),
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", axes=[1]),
        helper.make_node("Sub", ["c", "m"], ["d"], name="sub"),
        helper.make_node("Pow", ["d", "two"], ["p"], name="pow"),
        helper.make_node("ReduceMean", ["p"], ["v"], name="var", axes=[1]),
        helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
        helper.make_node("Sqrt", ["ve"], ["s"], name="sqrt"),
        helper.make_node("Div", ["d", "s"], ["nrm"], name="div"),
        helper.make_node("Conv", ["nrm", "w2"], ["y"], name="conv2"),
    ]
    g = helper.make_graph(
        nodes,
        "layernorm_channel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def nsr(q: np.ndarray, f: np.ndarray) -> float:
    """Noise-to-signal ratio over the finite values of ``q``."""
    q, f = q.reshape(-1).astype(np.float64), f.reshape(-1).astype(np.float64)
    ok = np.isfinite(q)
    return float(((q[ok] - f[ok]) ** 2).sum() / max((f[ok] ** 2).sum(), 1e-30))


@contextlib.contextmanager
def rule(gain: float):
    old = calibrate.COVER_GAIN
    calibrate.COVER_GAIN = gain
    try:
        yield
    finally:
        calibrate.COVER_GAIN = old


def row(name: str, model, calib: list, x: np.ndarray, target: str, bits: int = 8) -> None:
    """One table line per rule: graph output NSR, worst NSR over the LayerNorms' Div outputs (finite
    values only), % NaN in those, and how many Add/Sub output exponents differ from ESP-PPQ's rule."""
    graph = espq.load(model) if not isinstance(model, espq.ir.Graph) else model
    out = graph.outputs[0]
    probes = [n.outputs[0] for n in graph.nodes if n.op_type == "Div"]
    ref = espq.run_float(graph, x, outputs=[out, *probes])
    first: dict[str, int] = {}
    for label, gain in RULES.items():
        with rule(gain), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qm = espq.quantize(graph, calib, target=target, bits=bits, progress=False)
        q: dict[str, list] = {}
        for i in range(0, len(x), 50):
            for k, v in qm.run(x[i : i + 50], outputs=[out, *probes]).items():
                q.setdefault(k, []).append(v)
        q = {k: np.concatenate(v) for k, v in q.items()}
        subs = {
            n.name: qm.plan.tensors[n.outputs[0]].exponent
            for n in qm.graph.nodes
            if n.op_type in ("Add", "Sub")
        }
        first = first or subs
        changed = sum(subs[k] != first.get(k) for k in subs)
        ln = max((nsr(q[p], ref[p]) for p in probes), default=float("nan"))
        nan = 100.0 * np.mean([np.isnan(q[p]).mean() for p in probes]) if probes else 0.0
        print(
            f"| {name} | {target} s{bits} | {label} | {nsr(q[out], ref[out]):.4g} | {ln:.4g} | {nan:.3g} % "
            f"| {changed} of {len(subs)} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["esp32s3", "esp32p4"])
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--only", nargs="*", default=None)
    a = ap.parse_args()
    print("| model | target | rule | output NSR | worst Div NSR | NaN in Div | Add/Sub exps changed |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    want = set(a.only or ["layernorm-ch", "hey_mycroft", "resnet20"])
    if "layernorm-ch" in want:
        calib = [rng.standard_normal((8, 3, 6, 6)).astype(np.float32) for _ in range(4)]
        x = rng.standard_normal((64, 3, 6, 6)).astype(np.float32)
        for t in a.targets:
            for b in (8, 16):
                row("layernorm-ch", layernorm_channel(), calib, x, t, b)
    wheels = sorted(CACHE.glob("openwakeword-0.5.1-*.whl"))
    if "hey_mycroft" in want and wheels:
        with zipfile.ZipFile(wheels[0]) as z:
            m = onnx.load_from_string(z.read("openwakeword/resources/models/hey_mycroft_v0.1.onnx"))
        g = espq.load(m, input_shape=[1, 16, 96], canonicalize=False)
        g = canonicalize(g, passes=[p for p in CANONICAL_PASSES if p is not fuse_layernorm])
        calib = [rng.standard_normal((1, 16, 96)).astype(np.float32) for _ in range(16)]
        x = rng.standard_normal((32, 16, 96)).astype(np.float32)
        with _no_fusion():
            for t in a.targets:
                row("hey_mycroft (unfused)", g, calib, x, t, 8)
    if "resnet20" in want:
        from accuracy import load_task

        task = load_task("resnet20", a.limit)
        for t in a.targets:
            row("resnet20", str(task["path"]), task["calib"][:8], task["x"], t, 8)


@contextlib.contextmanager
def _no_fusion():
    """espq.quantize re-canonicalises a Graph: keep fuse_layernorm out for the unfused rows."""
    import espq.ir.passes.manager as manager

    defaults = manager.canonicalize.__defaults__
    manager.canonicalize.__defaults__ = (tuple(p for p in CANONICAL_PASSES if p is not fuse_layernorm),)
    try:
        yield
    finally:
        manager.canonicalize.__defaults__ = defaults


if __name__ == "__main__":
    main()
