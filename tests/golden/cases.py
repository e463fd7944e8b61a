"""Golden replay cases (issue 15, tinygrad's process replay): a few small models × targets whose exported
files, plans and analysis numbers are hashed into ``golden.json``.

A refactor must leave every hash unchanged; an intended behaviour change regenerates the file with
``python tools/update_golden.py`` in the same commit and says why in the commit message.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for graph_builders
from graph_builders import make_model  # noqa: E402

import espq  # noqa: E402

GOLDEN_FILE = Path(__file__).with_name("golden.json")
SHARED_MODELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "models"


def _conv_net() -> tuple:
    """Conv → Relu → MaxPool → depthwise Conv → Relu → GlobalAveragePool → Flatten → Gemm."""
    rng = np.random.default_rng(11)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], transB=1),
    ]
    inits = {
        "w1": rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.3, (8, 1, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 8).astype(np.float32),
        "w3": rng.normal(0, 0.3, (5, 8)).astype(np.float32),
        "b3": rng.normal(0, 0.1, 5).astype(np.float32),
    }
    model = make_model(nodes, [("x", [1, 3, 16, 16])], [("y", [1, 5])], inits, name="golden_conv")
    return model, (1, 3, 16, 16)


def _residual_net() -> tuple:
    """Two branches joined by Add and Concat, Sigmoid and Mul on the way out."""
    rng = np.random.default_rng(12)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"]),
        helper.make_node("Conv", ["ra", "w2", "b2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "a"], ["s"]),
        helper.make_node("Sigmoid", ["s"], ["sg"]),
        helper.make_node("Mul", ["sg", "s"], ["m"]),
        helper.make_node("Concat", ["m", "ra"], ["y"], axis=1),
    ]
    inits = {
        "w1": rng.normal(0, 0.4, (4, 2, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 4).astype(np.float32),
        "w2": rng.normal(0, 0.4, (4, 4, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 4).astype(np.float32),
    }
    model = make_model(nodes, [("x", [1, 2, 8, 8])], [("y", [1, 8, 8, 8])], inits, name="golden_residual")
    return model, (1, 2, 8, 8)


def _resnet20() -> tuple | None:
    path = SHARED_MODELS / "cifar10_resnet20.onnx"
    return (str(path), (1, 3, 32, 32)) if path.is_file() else None


#: name -> builder returning (model, input shape) or None when its data is absent
MODELS = {"conv": _conv_net, "residual": _residual_net, "resnet20": _resnet20}
#: (model, target, bits) cases
CASES = [
    (m, t, b)
    for m in ("conv", "residual")
    for t, b in (("esp32p4", 8), ("esp32s3", 8), ("c", 8), ("esp32p4", 16), ("esp32s3", 16))
] + [("resnet20", t, 8) for t in ("esp32p4", "esp32s3")]


def case_id(case: tuple) -> str:
    return "{}-{}-s{}".format(*case)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rounded(v):
    """Analysis numbers at 4 significant digits (float noise across CPUs must not flip a hash)."""
    if isinstance(v, float):
        return None if not math.isfinite(v) else float(f"{v:.4g}")
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items() if k != "seconds"}
    if isinstance(v, list | tuple):
        return [_rounded(x) for x in v]
    return v


def replay(case: tuple) -> dict[str, str] | None:
    """Hashes of one case's outputs: .espdl, .info, .json, the plan and the graphwise/layerwise numbers.

    None when the case's model is not available (shared/ absent)."""
    name, target, bits = case
    built = MODELS[name]()
    if built is None:
        return None
    model, shape = built
    rng = np.random.default_rng(1234)
    calib = [rng.normal(0, 1, shape).astype(np.float32) for _ in range(4)]
    qm = espq.quantize(model, calib, target=target, bits=bits, progress=False)
    report = qm.analyse(calib, steps=2, kinds=("graphwise", "layerwise"), progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.espdl"
        qm.export(out, export_test_values=True)
        files = {ext: (out.with_suffix(ext)).read_bytes() for ext in (".espdl", ".info", ".json")}
    analysis = {k: _rounded(v) for k, v in report.to_dict().items() if k in ("ops", "summary")}
    return {
        "espdl": _sha(files[".espdl"]),
        "info": _sha(files[".info"]),
        "json": _sha(files[".json"]),
        "plan": _sha(json.dumps(qm.plan.to_json(), sort_keys=True).encode()),
        "analysis": _sha(json.dumps(analysis, sort_keys=True).encode()),
    }


def load_golden() -> dict[str, dict[str, str]]:
    return json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.is_file() else {}
