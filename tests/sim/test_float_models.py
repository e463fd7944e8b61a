"""Whole-model float runs vs onnxruntime on every ONNX in ../shared/models and ../shared/espdl-zoo.

Dynamic-shape models get a sensible static input (PP-OCR det 1x3x320x320, rec 1x3x48x320,
cls 1x3x48x192, YOLOv8n 1x3x320x320) and ONNX shape inference before conversion, as the
quantiser will see them. Batch 2 runs the batch-1 graph and compares with ORT on a batch-2 copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import shape_inference
from test_float_helpers import assert_close

from espq.ir.onnx_io import graph_from_onnx
from espq.sim.float import run_float

SHARED = Path(__file__).resolve().parents[2].parent / "shared"  # ../shared beside the repo
STATIC = {
    "ch_PP-OCRv4_det_infer.onnx": (1, 3, 320, 320),
    "ch_PP-OCRv4_rec_infer.onnx": (1, 3, 48, 320),
    "ch_ppocr_mobile_v2.0_cls_infer.onnx": (1, 3, 48, 192),
    "nudenet_yolov8n_320.onnx": (1, 3, 320, 320),
}
BATCH2 = {
    "cifar10_resnet20.onnx",
    "cifar10_resnet56.onnx",
    "ch_ppocr_mobile_v2.0_cls_infer.onnx",
    "ch_PP-OCRv4_rec_infer.onnx",
    "nudenet_yolov8n_320.onnx",
    "streaming_esp32p4_model.onnx",
}


def _model_paths() -> list[Path]:
    paths = sorted((SHARED / "models").glob("*.onnx")) + sorted((SHARED / "espdl-zoo").glob("*.onnx"))
    return paths or [SHARED / "models" / "missing.onnx"]


def _with_input_shape(model: onnx.ModelProto, shape: tuple[int, ...], infer: bool) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, shape):
        d.ClearField("dim_param")
        d.dim_value = v
    if infer:
        return shape_inference.infer_shapes(m)
    del m.graph.value_info[:]  # batch-2 copy for ORT: drop the batch-1 annotations
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    return m


def _static_shape(model: onnx.ModelProto, name: str) -> tuple[int, ...]:
    if name in STATIC:
        return STATIC[name]
    return tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)


@pytest.mark.slow
@pytest.mark.parametrize("path", _model_paths(), ids=lambda p: p.name)
def test_model_matches_onnxruntime(path: Path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    model = onnx.load(str(path))
    assert len(model.graph.input) == 1
    shape = _static_shape(model, path.name)
    batch1 = _with_input_shape(model, shape, infer=True)
    graph = graph_from_onnx(batch1)
    batches = [1, 2] if path.name in BATCH2 else [1]
    for n in batches:
        x = np.random.default_rng(n).standard_normal((n, *shape[1:])).astype(np.float32)
        ort_model = batch1 if n == 1 else _with_input_shape(model, (n, *shape[1:]), infer=False)
        sess = ort.InferenceSession(ort_model.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {model.graph.input[0].name: x})
        got = run_float(graph, x)
        assert list(got) == graph.outputs
        for (name, a), b in zip(got.items(), ref):
            assert_close(a, b, f"{path.name} batch {n} output {name}")


def _optest_dirs() -> list[Path]:
    root = SHARED / "espdl-optests"
    dirs = sorted({p.parent.name for p in root.glob("*/*/*.onnx")}) if root.exists() else []
    return dirs or ["missing"]


@pytest.mark.parametrize("op_dir", _optest_dirs())
def test_espdl_optest_float_models_match_onnxruntime(op_dir: str):
    """Espressif's op-test float ONNX files (one per case, deduplicated across targets) vs ORT."""
    files = sorted((SHARED / "espdl-optests").glob(f"*/{op_dir}/*.onnx"))
    if not files:
        pytest.skip(f"{SHARED / 'espdl-optests'} not present")
    seen: set[str] = set()
    for path in files:
        case = path.name.replace("_s16", "").replace("_s8", "")
        if case in seen:
            continue
        seen.add(case)
        model = onnx.load(str(path))
        graph = graph_from_onnx(model)
        rng = np.random.default_rng(len(seen))
        feeds = {}
        for vi in model.graph.input:
            if vi.name in graph.initializers:
                continue
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, feeds)
        got = run_float(graph, feeds)
        for (name, a), b in zip(got.items(), ref):
            assert_close(a, b, f"{path.name} output {name}")
