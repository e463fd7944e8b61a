"""Reader: decode every real .espdl file and check concrete facts (esp_dl_facts.md §7)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from espq import espdl
from espq.espdl import TensorDataType

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ZOO = sorted((SHARED / "espdl-zoo").glob("*.espdl")) if (SHARED / "espdl-zoo").exists() else []
OPTESTS = (
    sorted((SHARED / "espdl-optests").glob("*/*/*.espdl")) if (SHARED / "espdl-optests").exists() else []
)


def _zoo(shared, name: str) -> espdl.EspdlModel:
    return espdl.read(shared("espdl-zoo", name))


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_zoo_file_decodes(path: Path):
    m = espdl.read(path)
    g = m.graph
    assert m.format == "EDL2" and m.mode == 0
    assert g.nodes and g.value_info and g.inputs and g.outputs
    assert len({n.name for n in g.nodes}) == len(g.nodes)
    for t in g.initializers.values():
        assert len(t.raw) == t.numel * t.dtype.itemsize
        assert t.exponents, t.name  # every parameter carries >= 1 exponent (§2.1)
        assert (len(t.raw) + len(t.raw_padding)) % 16 == 0
    # op-test, tutorial and non-streaming streaming-demo models embed test values, zoo models not (§2.6)
    has_tests = path.stem.startswith(("optest_", "tutorial_")) or path.stem.endswith("esp32p4_model")
    has_tests = has_tests or path.stem.endswith("esp32s3_model")
    assert bool(g.test_inputs) == has_tests and bool(g.test_outputs) == has_tests
    if has_tests:
        assert set(g.test_inputs) == {v.name for v in g.inputs}


def test_mobilenetv2_p4_facts(shared):
    m = _zoo(shared, "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")
    g = m.graph
    assert m.ir_version == 7 and m.opset_import == [] and m.metadata_props == {} and m.target is None
    assert g.name == "main_graph"
    assert len(g.nodes) == 70
    assert Counter(n.op_type for n in g.nodes) == {
        "Conv": 52,
        "Add": 10,
        "RequantizeLinear": 4,
        "GlobalAveragePool": 1,
        "Transpose": 1,
        "Flatten": 1,
        "Gemm": 1,
    }
    assert sum(1 for n in g.nodes if n.op_type == "Conv" and n.attr("group") > 1) == 17
    assert all(n.attr("quant_type") == "S8" for n in g.nodes)
    first = g.nodes[0]
    assert first.attributes == {
        "activation": "Relu",
        "dilations": [1, 1],
        "group": 1,
        "kernel_shape": [3, 3],
        "pads": [1, 1, 1, 1],
        "quant_type": "S8",
        "strides": [2, 2],
    }
    w = g.initializers["onnx::Conv_468"]
    assert first.inputs[1] == w.name
    assert w.dims == [3, 3, 3, 32] and w.data_type == TensorDataType.INT8
    assert w.layout == "(N/16)HWC16" and w.doc_string == "layout ==> (N/16)HWC16"
    assert len(w.raw) == 864 and len(w.exponents) == 32
    assert (min(w.exponents), max(w.exponents)) == (-17, -7)
    assert np.abs(w.values()).max() <= 127
    b = g.initializers["onnx::Conv_469"]
    assert b.dims == [32] and b.data_type == TensorDataType.INT32
    assert (int(b.values().min()), int(b.values().max())) == (-151987, 237085)
    assert b.exponents == [-6 + e for e in w.exponents]  # bias exp = input exp + weight exp (§2.4)
    assert len(g.initializers) == 114 and len(g.value_info) == 71
    assert g.inputs[0].name == "input.1" and g.inputs[0].shape == [1, 224, 224, 3]
    assert g.inputs[0].exponents == [-6] and g.inputs[0].elem_type == TensorDataType.INT8
    assert g.outputs[0].name == "466" and g.outputs[0].shape == [1, 1000] and g.outputs[0].exponent == -2
    gemm = g.nodes[-1]
    assert gemm.op_type == "Gemm" and gemm.attributes["alpha"] == 1.0 and gemm.attributes["transB"] == 0
    gw = g.initializers[gemm.inputs[1]]
    assert gw.dims == [1, 1, 1280, 1000] and gw.layout == "(N/16)HWC16_UNALIGNED"
    assert len(gw.exponents) == 1000 and (min(gw.exponents), max(gw.exponents)) == (-10, -8)
    assert m.original_weight(gw.name).shape == (1000, 1280)
    assert m.original_weight(w.name).shape == (32, 3, 3, 3)
    scales = [t for t in g.initializers.values() if t.data_type == TensorDataType.FLOAT]
    assert len(scales) == 4 and all(t.dims == [1] and t.values()[0] == 2.0 for t in scales)


def test_mobilenetv2_s3_is_per_tensor(shared):
    g = _zoo(shared, "imagenet_cls_mobilenetv2_s8_v1_s3.espdl").graph
    assert len(g.nodes) == 71
    assert Counter(n.op_type for n in g.nodes)["RequantizeLinear"] == 5
    weights = [g.initializers[n.inputs[1]] for n in g.nodes if n.op_type in ("Conv", "Gemm")]
    assert len(weights) == 53 and all(len(w.exponents) == 1 for w in weights)


def test_int16_ocr_luts(shared):
    m = _zoo(shared, "pp_ocr_v6_rec_s16_p4.espdl")
    g = m.graph
    assert m.ir_version == 8 and len(g.nodes) == 79
    luts = [n for n in g.nodes if n.op_type == "LUT"]
    assert len(luts) == 15
    tables = [g.initializers[n.attr("lut")] for n in luts]
    assert all(t.dims == [2049] and t.data_type == TensorDataType.INT16 for t in tables)
    biases = [t for t in g.initializers.values() if t.data_type == TensorDataType.INT64 and t.layout == "UNK"]
    assert biases and min(int(t.values().min()) for t in biases) < -(2**31)
    assert {t.layout for t in g.initializers.values()} >= {"(N/8)HWC8", "(N/8)WC8"}


def test_face_detector_input_exponent(shared):
    g = _zoo(shared, "human_face_detect_msr_s8_v1_p4.espdl").graph
    assert g.inputs[0].shape == [1, 120, 160, 3] and g.inputs[0].exponents == [1]
    assert len(g.outputs) == 6
    assert {n.op_type for n in g.nodes} == {"Conv", "Concat"}


def test_optest_gemm_facts(shared):
    m = _zoo(shared, "optest_esp32p4_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl")
    g = m.graph
    assert m.target == "esp32p4" and m.ir_version == 7
    w = g.initializers["ops.0.weight"]
    assert (
        w.dims == [1, 1, 31, 32] and w.exponents == [-9] and w.layout == "(N/16)HWC16" and len(w.raw) == 992
    )
    assert g.initializers["ops.0.bias"].exponents == [-15]
    ti, to = g.test_inputs["onnx::Gemm_0"], g.test_outputs["4"]
    assert (ti.dims, ti.exponents, len(ti.raw), len(ti.raw_padding)) == ([1, 31], [-6], 31, 1)
    assert (to.dims, to.exponents) == ([1, 32], [-7])
    c = _zoo(shared, "optest_c_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl")
    assert c.target == "c" and c.graph.initializers["ops.0.weight"].layout == "NHWC"
    # the "…64_kshap_32_64_relu…" cases actually carry activation "Linear" (§7.2)
    lin = _zoo(shared, "optest_esp32s3_gemm_ishap_1_64_kshap_32_64_relu_s8.espdl")
    assert lin.target == "esp32s3" and lin.graph.nodes[0].attr("activation") == "Linear"


def test_tutorial_legacy_layout_names(shared):
    g = _zoo(shared, "tutorial_3gemm_p4.espdl").graph
    assert [n.op_type for n in g.nodes] == ["Gemm"] * 3
    assert g.initializers["fc1.weight"].layout == "N16HWC16"
    assert g.initializers["fc3.weight"].layout == "N16HWC16_UNALIGNED"


def test_all_optests_decode():
    if not OPTESTS:
        pytest.skip("espdl-optests not present")
    targets = Counter()
    for path in OPTESTS:
        m = espdl.read(path)
        assert m.graph.test_inputs and m.graph.test_outputs, path
        assert m.target in {"esp32p4", "esp32s3", "c"}, path
        assert path.parent.parent.name.startswith(m.target), path
        targets[m.target] += 1
    assert len(OPTESTS) == 1365
    assert sum(targets.values()) == len(OPTESTS)


def test_optest_sample_structure(shared):
    m = espdl.read(
        shared("espdl-optests", "esp32p4_s8", "Conv", "conv2d_ishap_1_22_19_23_kshap_33_22_3_3_s8.espdl")
    )
    (node,) = m.graph.nodes
    assert (
        node.op_type == "Conv" and node.attr("pads") == [1, 1, 1, 1] and node.attr("activation") == "Linear"
    )
    w = m.graph.initializers["conv.weight"]
    assert w.dims == [3, 3, 22, 33] and w.layout == "(N/16)HWC16_UNALIGNED" and len(w.exponents) == 33
    dw = espdl.read(
        shared(
            "espdl-optests", "esp32p4_s8", "Conv", "depthwise_conv2d_ishap_1_27_3_3_kshap_27_1_5_5_s8.espdl"
        )
    )
    assert dw.graph.nodes[0].attr("group") == 27
    assert dw.graph.initializers["conv.weight"].dims == [5, 5, 27, 1]
    assert dw.original_weight("conv.weight").shape == (27, 1, 5, 5)
