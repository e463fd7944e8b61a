"""fuse_layernorm: decomposed LayerNorm chains → LayerNormalization (issue 13 finding 4)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from espq.ir.onnx_io import graph_from_onnx
from espq.ir.passes import CANONICAL_PASSES, canonicalize, fuse_layernorm, fuse_rmsnorm, infer_shapes

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand


def _chain(square: str = "Pow", gamma: bool = True, beta: bool = True, axes=(-1,)) -> tuple[list, dict]:
    """openWakeWord's head pattern (PyTorch nn.LayerNorm exported at opset 13)."""
    ax = {"axes": list(axes)}
    nodes = [
        node("Relu", ["x"], ["r"]),
        node("ReduceMean", ["r"], ["m"], name="mean", **ax),
        node("Sub", ["r", "m"], ["d"]),
        node("Pow", ["d", "two"], ["p"]) if square == "Pow" else node("Mul", ["d", "d"], ["p"]),
        node("ReduceMean", ["p"], ["v"], **ax),
        node("Add", ["v", "eps"], ["ve"]),
        node("Sqrt", ["ve"], ["s"]),
        node("Div", ["d", "s"], ["n"]),
    ]
    inits = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32)}
    tail = "n"
    if gamma:
        nodes.append(node("Mul", [tail, "g"], ["gm"]))
        inits["g"] = rand(8, seed=3, lo=0.5, hi=2.0)
        tail = "gm"
    if beta:
        nodes.append(node("Add", ["b", tail], ["y"]))  # constant first: Add commutes
        inits["b"] = rand(8, seed=4)
        tail = "y"
    nodes.append(node("Relu", [tail], ["out"]))
    return nodes, inits


@pytest.mark.parametrize(
    "square,gamma,beta,axes",
    [("Pow", True, True, (-1,)), ("Mul", True, False, (2,)), ("Pow", False, False, (1, 2))],
)
def test_fuse_layernorm(square, gamma, beta, axes):
    nodes, inits = _chain(square, gamma, beta, axes)
    g = build(nodes, inits, {"x": (1, 5, 8)}, {"out": (1, 5, 8)}, opset=13)
    infer_shapes(g)
    before = g.copy()
    assert fuse_layernorm(g) == 1
    assert ops(g) == ["Relu", "LayerNormalization", "Relu"]
    ln = g.nodes[1]
    assert ln.name == "mean/LayerNorm" and ln.inputs[0] == "r"
    assert ln.attrs == {"axis": 3 - len(axes), "epsilon": pytest.approx(1e-5)}
    assert len(ln.inputs) == (3 if beta else 2)
    assert g.initializers[ln.inputs[1]].shape == (1, 5, 8)[3 - len(axes) :]
    g.opset = 18  # LayerNormalization needs opset >= 17 under onnxruntime; `before` stays at 13
    check_equivalent(before, g, rtol=1e-5)


def test_fuse_layernorm_negatives():
    nodes, inits = _chain(axes=(1,))  # not the trailing axes: ESP-DL normalises axis..end
    g = build(nodes, inits, {"x": (1, 5, 8)}, {"out": (1, 5, 8)}, opset=13)
    infer_shapes(g)
    assert fuse_layernorm(g) == 0
    nodes, inits = _chain()
    g = build(nodes, inits, {"x": (1, 5, 8)}, {"out": (1, 5, 8), "d": (1, 5, 8)}, opset=13)
    infer_shapes(g)
    assert fuse_layernorm(g) == 0  # an intermediate is a graph output
    nodes, inits = _chain()
    inits["two"] = np.array(3.0, np.float32)
    g = build(nodes, inits, {"x": (1, 5, 8)}, {"out": (1, 5, 8)}, opset=13)
    infer_shapes(g)
    assert fuse_layernorm(g) == 0  # not a square


def _cache() -> Path:
    return Path(os.environ.get("ESPQ_REALMODEL_CACHE", "~/.cache/espq-realmodels")).expanduser()


def test_fuse_layernorm_openwakeword_head(tmp_path):
    """hey_mycroft_v0.1.onnx (openwakeword==0.5.1 wheel): both LayerNorms fuse, outputs unchanged."""
    wheels = sorted(_cache().glob("openwakeword-0.5.1-*.whl"))
    if not wheels:
        pytest.skip("openwakeword==0.5.1 wheel not cached (pip download --no-deps openwakeword==0.5.1)")
    with zipfile.ZipFile(wheels[0]) as z:
        data = z.read("openwakeword/resources/models/hey_mycroft_v0.1.onnx")
    g = graph_from_onnx(onnx.load_from_string(data))
    out = canonicalize(g)
    assert ops(out).count("LayerNormalization") == 2
    assert not {"ReduceMean", "Sqrt", "Div", "Pow"} & set(ops(out))
    # without fuse_layernorm, fuse_rmsnorm would take the variance branch (an RMSNorm of x - mean)
    before = canonicalize(g, passes=[p for p in CANONICAL_PASSES if p not in (fuse_layernorm, fuse_rmsnorm)])
    check_equivalent(before, out, rtol=1e-5)
