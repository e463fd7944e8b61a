"""canonicalize(): fixed-point driver, report, copy semantics, and real models vs onnxruntime."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from espq.ir.graph import Graph
from espq.ir.onnx_io import graph_from_onnx
from espq.ir.passes import CANONICAL_PASSES, PassReport, canonicalize, fuse_swish, remove_identity

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand, run, session
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand, run, session

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def _mixed_graph() -> Graph:
    """Constant, Identity, Conv→BN, constant Add, Sigmoid·Mul, ConvTranspose, MatMul+Add, dead branch."""
    nodes = [
        node("Constant", [], ["w1"], value=rand(4, 3, 3, 3)),
        node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        node("Identity", ["c1"], ["c1i"]),
        node("BatchNormalization", ["c1i", "s", "b", "m", "v"], ["bn"]),
        node("Add", ["bn", "k"], ["a"]),
        node("Sigmoid", ["a"], ["sg"]),
        node("Mul", ["sg", "a"], ["sw"]),
        node("ConvTranspose", ["sw", "wt"], ["up"], strides=[2, 2], pads=[1, 1, 0, 0]),
        node("GlobalAveragePool", ["up"], ["gp"]),
        node("Flatten", ["gp"], ["fl"]),
        node("MatMul", ["fl", "wm"], ["mm"]),
        node("Add", ["mm", "bm"], ["y"]),
        node("Relu", ["x"], ["dead"]),
    ]
    inits = {
        "s": rand(4, seed=1, lo=0.5, hi=1.5),
        "b": rand(4, seed=2),
        "m": rand(4, seed=3),
        "v": rand(4, seed=4, lo=0.2, hi=1.0),
        "k": rand(1, 4, 1, 1, seed=5),
        "wt": rand(4, 2, 3, 3, seed=6),
        "wm": rand(2, 5, seed=7),
        "bm": rand(5, seed=8),
    }
    g = build(nodes, inits, {"x": (1, 3, 6, 6)}, {"y": (1, 5)})
    g.values["fl"] = g.values["y"].copy()
    g.values["fl"].shape = (1, 2)
    g.values["sw"] = g.values["x"].copy()
    g.values["sw"].shape = (1, 4, 6, 6)
    return g


def test_canonicalize_mixed_graph_copy_report_and_equivalence():
    g = _mixed_graph()
    snapshot = ops(g)
    out, rep = canonicalize(g, report=True)
    assert ops(g) == snapshot and "w1" not in g.initializers  # input graph untouched
    assert isinstance(rep, PassReport) and rep.converged and len(rep.rounds) >= 2
    assert not any(rep.rounds[-1].values())
    t = rep.totals
    assert t["constant_to_initializer"] == 1 and t["remove_identity"] == 1
    assert t["fuse_add_to_bias"] == 1 and t["fold_batchnorm"] == 1 and t["fuse_swish"] == 1
    assert t["convtranspose_to_conv"] == 1 and t["matmul_add_to_gemm"] == 1
    assert ops(out) == ["Conv", "Swish", "InsertZeros", "Conv", "GlobalAveragePool", "Flatten", "Gemm"]
    assert out.outputs == ["y"] and out.opset >= 18
    assert "canonicalize:" in str(rep) and "converged" in str(rep)
    check_equivalent(g, out)
    # a canonical graph is a fixed point
    again, rep2 = canonicalize(out, report=True)
    assert ops(again) == ops(out) and len(rep2.rounds) == 1


def test_canonicalize_custom_passes_and_round_bound(caplog):
    g = build([node("Identity", ["x"], ["a"]), node("Relu", ["a"], ["y"])], {}, {"x": (2,)}, {"y": (2,)})
    assert ops(canonicalize(g, [remove_identity])) == ["Relu"]
    assert ops(canonicalize(g, [fuse_swish])) == ["Identity", "Relu"]

    def always(graph: Graph) -> int:
        return 1

    with caplog.at_level(logging.WARNING, logger="espq.ir.passes.manager"):
        _, rep = canonicalize(g, [always], max_rounds=3, report=True)
    assert not rep.converged and len(rep.rounds) == 3 and rep.totals == {"always": 3}
    assert "still rewriting" in caplog.text


def test_canonical_order_is_documented():
    names = [p.__name__ for p in CANONICAL_PASSES]
    assert names.index("fold_batchnorm") < names.index("batchnorm_to_conv")
    assert (
        names.index("fuse_add_to_bias") < names.index("fold_batchnorm") < names.index("convtranspose_to_conv")
    )
    assert names[0] == "constant_to_initializer" and names[-1] == "remove_dead_nodes"
    import espq.ir.passes.manager as manager

    for n in names:
        assert f"``{n}``" in manager.__doc__


# ---------------------------------------------------------------- real models
FIXED_DIMS = {
    "ch_PP-OCRv4_det_infer": (1, 3, 320, 320),
    "ch_PP-OCRv4_rec_infer": (1, 3, 48, 320),
    "ch_ppocr_mobile_v2.0_cls_infer": (1, 3, 48, 192),
    "nudenet_yolov8n_320": (1, 3, 320, 320),
}
MODELS = sorted(SHARED.glob("models/*.onnx")) + sorted(SHARED.glob("espdl-zoo/*.onnx"))


def _load_static(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    dims = FIXED_DIMS.get(path.stem)
    if dims is not None:
        for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim, dims):
            d.Clear()
            d.dim_value = v
    return onnx.shape_inference.infer_shapes(model, data_prop=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", MODELS or [None], ids=[p.stem for p in MODELS] or ["no-shared-models"])
def test_real_model_canonicalize_matches_onnxruntime(path):
    if path is None:
        pytest.skip(f"no ONNX models under {SHARED}")
    model = _load_static(path)
    g = graph_from_onnx(model)
    before = Counter(ops(g))
    out, rep = canonicalize(g, report=True)
    after = Counter(ops(out))
    assert rep.converged and out.opset >= 18
    assert out.outputs == g.outputs

    feeds = {i: np.random.default_rng(0).uniform(0, 1, g.shape(i)).astype(np.float32) for i in g.inputs}
    ref = session(model).run(list(g.outputs), feeds)
    got = run(out, feeds)
    for r, o in zip(ref, got):
        assert r.shape == o.shape
        err = float(np.abs(r.astype(np.float64) - o).max())
        assert err <= 1e-4 * max(1.0, float(np.abs(r).max())), f"{path.stem}: max |Δ| {err:.3g}"

    gone = {"Constant", "BatchNormalization", "Identity", "Dropout", "ConvTranspose", "Shape"}
    assert not gone & set(after), sorted(gone & set(after))
    if path.stem.startswith(("ch_PP", "ch_ppocr")):
        assert before["Constant"] > 300 and before["BatchNormalization"] > 0
        assert rep.totals["fold_batchnorm"] == before["BatchNormalization"]
    if path.stem == "ch_PP-OCRv4_det_infer":
        assert after["InsertZeros"] == before["ConvTranspose"] == 2
    if path.stem == "ch_ppocr_mobile_v2.0_cls_infer":
        assert after["Gemm"] == 1 and after["MatMul"] == 0
    if path.stem == "nudenet_yolov8n_320":
        assert after["Swish"] == 57 and after["Reshape"] < before["Reshape"]
    if path.stem.startswith(("cifar10_resnet", "mobilenetv2")):
        assert after == before  # already canonical


@pytest.mark.slow
def test_dynamic_old_opset_model_stays_valid_at_its_opset(shared, caplog):
    """Without fixed input dims the opset<13 Softmax of PP-OCR cls cannot be converted: the graph keeps
    opset 11 (nothing half-converted), the other passes still fire, and a warning says why."""
    path = shared("models", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
    model = onnx.load(str(path))
    g = graph_from_onnx(model)
    with caplog.at_level(logging.WARNING, logger="espq.ir.passes.manager"):
        out, rep = canonicalize(g, report=True)
    assert out.opset == 11 and "left at opset 11" in caplog.text
    assert rep.totals["fold_batchnorm"] == 35 and "Constant" not in ops(out)
    feeds = {g.inputs[0]: np.random.default_rng(1).uniform(0, 1, (1, 3, 48, 192)).astype(np.float32)}
    ref = session(model).run(list(g.outputs), feeds)
    np.testing.assert_allclose(run(out, feeds)[0], ref[0], rtol=1e-4, atol=1e-6)
