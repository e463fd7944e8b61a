"""espq.espdl.validate: real files pass; one in-memory edit per rule makes exactly that rule fire."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from espq import espdl
from espq.errors import ValidationError
from espq.espdl import EspdlTensor, TensorDataType
from espq.espdl.validate import validate, violations

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ZOO = sorted((SHARED / "espdl-zoo").glob("*.espdl")) if (SHARED / "espdl-zoo").exists() else []
REFERENCE = sorted((SHARED / "reference").glob("*/*.espdl")) if (SHARED / "reference").exists() else []
GEMM = ("espdl-zoo", "tutorial_3gemm_p4.espdl")  # 3 S8 Gemms fc1 -> fc2 -> fc3 with test values
OPT = "espdl-optests"


def _read(shared, *parts: str) -> espdl.EspdlModel:
    return espdl.read(shared(*parts))


def _one(found: list[str], *needles: str) -> str:
    """The single violation, which must contain every needle."""
    assert len(found) == 1, found
    assert all(n in found[0] for n in needles), found[0]
    return found[0]


def _any(found: list[str], *needles: str) -> str:
    hits = [v for v in found if all(n in v for n in needles)]
    assert hits, found
    return hits[0]


# ------------------------------------------------------------------------------------ real files pass
@pytest.mark.parametrize("path", ZOO + REFERENCE, ids=lambda p: p.stem)
def test_espressif_and_esp_ppq_files_are_valid(path: Path):
    assert violations(espdl.read(path)) == []
    validate(path)  # no exception


def test_every_espressif_op_test_is_valid(shared):
    root = shared(OPT)
    files = sorted(root.glob("*/*/*.espdl"))
    assert len(files) > 1000
    bad = {str(f.relative_to(root)): v for f in files if (v := violations(espdl.read(f)))}
    assert bad == {}


def test_target_from_metadata_and_argument(shared):
    # the P4 zoo MobileNetV2 has per-channel weights: fine on esp32p4, not on esp32s3 (§4.2)
    m = _read(shared, "espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")
    assert violations(m, target="esp32p4") == []
    found = violations(m, target="esp32s3")
    per_channel = [v for v in found if "per-tensor weights only" in v]
    assert len(per_channel) == 53 * 2  # 53 conv/gemm weights and their biases
    assert all("per-tensor weights only" in v or "bias range" in v for v in found)
    m.metadata_props["target"] = "esp32s3"
    assert len([v for v in violations(m) if "per-tensor weights only" in v]) == 106
    _any(violations(m, target="esp32p4"), "metadata target 'esp32s3' differs")


def test_validate_raises_with_every_violation(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[0].attributes.pop("quant_type")
    m.graph.nodes[2].op_type = "Foo"
    with pytest.raises(ValidationError) as exc:
        validate(m)
    assert len(exc.value.violations) == 2
    assert "2 violation(s) in model" in str(exc.value)
    assert "'/fc1/Gemm'" in str(exc.value) and "'/fc3/Gemm'" in str(exc.value)


# ------------------------------------------------------------------------------------ structure
def test_topological_order(shared):
    m = _read(shared, *GEMM)
    g = m.graph
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    _one(violations(m), "node '/fc2/Gemm'", "'/Relu_output_0' is produced by a later node", "topological")


def test_unique_node_names(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[1].name = "/fc1/Gemm"
    _one(violations(m), "node name '/fc1/Gemm' is used by 2 nodes")


def test_undefined_input(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[1].inputs[0] = "missing"
    _any(violations(m), "node '/fc2/Gemm'", "input 'missing' is not defined")


def test_undefined_graph_output(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[2].outputs[0] = "other"
    found = violations(m)
    _any(found, "graph output '11' is not produced")
    _any(found, "node '/fc3/Gemm'", "output 'other' has no ValueInfo")


def test_unregistered_op_type(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[1].op_type = "Einsum"
    _one(violations(m), "node '/fc2/Gemm' (Einsum)", "not registered")


@pytest.mark.parametrize(
    ("value", "needle"),
    [(None, "missing 'quant_type'"), ("S4", "quant_type 'S4' is not one of")],
)
def test_quant_type_present_and_valid(shared, value, needle):
    m = _read(shared, *GEMM)
    if value is None:
        del m.graph.nodes[2].attributes["quant_type"]
    else:
        m.graph.nodes[2].attributes["quant_type"] = value
    _one(violations(m), "node '/fc3/Gemm'", needle)


def test_quant_type_not_supported_by_op(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[0].attributes["quant_type"] = "F32"  # Gemm has no float kernel (§3.2)
    found = violations(m)
    _any(found, "node '/fc1/Gemm'", "quant_type F32 is not supported by ESP-DL's Gemm (S16/S8)")
    _any(found, "node '/fc1/Gemm'", "output '/Relu_output_0' is INT8 but quant_type F32 produces FLOAT")


def test_loader_quant_type_aliases_accepted(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[0].attributes["quant_type"] = "SYMM_S8"
    assert violations(m) == []


def test_param_input_must_be_initializer(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[1].inputs[1] = "/Relu_output_0"
    found = violations(m)
    _any(found, "node '/fc2/Gemm'", "input 1 '/Relu_output_0' must be an initializer")
    _any(found, "initializer 'fc2.weight' is not used")


def test_fused_activation(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[0].attributes["activation"] = "PRelu"
    _one(violations(m), "node '/fc1/Gemm'", "fused activation 'PRelu'")


# ------------------------------------------------------------------------------------ exponents
def test_negative_shift_per_tensor(shared):
    m = _read(shared, *GEMM)
    m.graph.initializers["fc2.weight"].exponents = [0]  # shift = -5 - (-4) - 0 = -1
    _one(violations(m), "node '/fc2/Gemm'", "shift e_out - e_in - e_w = -5 - -4 - 0 = -1 < 0")


def test_negative_shift_per_channel(shared):
    m = _read(shared, OPT, "esp32p4_s8", "Conv", "conv2d_ishap_1_16_20_20_kshap_32_16_1_1_s8.espdl")
    conv = m.graph.nodes[0]
    w = m.graph.initializers[conv.inputs[1]]
    assert len(w.exponents) == 32
    w.exponents[5] = 10
    _one(violations(m), f"node '{conv.name}' (Conv)", "at 1 channel(s), first channel 5")


def test_mul_shift(shared):
    m = espdl.read(sorted(shared(OPT, "esp32p4_s8", "Mul").glob("*.espdl"))[0])
    mul = next(n for n in m.graph.nodes if n.op_type == "Mul")
    out = m.graph.value(mul.outputs[0])
    assert out is not None and out.name in m.graph.test_outputs
    m.graph.test_outputs.clear()
    m.graph.test_inputs.clear()
    out.exponents = [-40]
    _one(violations(m), f"node '{mul.name}' (Mul)", "< 0")


@pytest.mark.parametrize(
    ("folder", "op"),
    [
        ("Add", "Add"),
        ("Concat", "Concat"),
        ("MaxPool", "MaxPool"),
        ("Greater", "Greater"),
        ("Transpose", "Transpose"),
    ],
)
def test_equal_exponent_ops(shared, folder, op):
    files = sorted(shared(OPT, "esp32p4_s8", folder).glob("*.espdl"))
    m = espdl.read(files[0])
    g = m.graph
    node = next(n for n in g.nodes if n.op_type == op)
    g.test_inputs.clear()
    g.test_outputs.clear()
    first = next(t for t in node.inputs if t not in g.initializers)
    g.value(first).exponents = [g.value(first).exponent + 1]
    _one(violations(m), f"node '{node.name}' ({op})", "does not rescale")


def test_requantize_may_change_exponent(shared):
    m = _read(shared, "espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")
    rq = next(n for n in m.graph.nodes if n.op_type == "RequantizeLinear")
    assert m.graph.value(rq.inputs[0]).exponent != m.graph.value(rq.outputs[0]).exponent
    assert violations(m) == []


# ------------------------------------------------------------------------------------ parameters
def test_bias_dtype(shared):
    m = _read(shared, *GEMM)
    b = m.graph.initializers["fc2.bias"]
    m.graph.initializers["fc2.bias"] = EspdlTensor.from_array(
        b.name, b.values().astype(np.int64), TensorDataType.INT64, b.exponents, b.doc_string
    )
    _one(violations(m), "node '/fc2/Gemm'", "bias 'fc2.bias' is INT64", "needs INT32")


def test_bias_bits_per_target(shared):
    m = _read(shared, *GEMM)
    b = m.graph.initializers["fc2.bias"]
    vals = b.values()
    vals[3] = 1 << 19  # one past the 20-bit range of ESP32-S3 int8 (§4.3)
    m.graph.initializers["fc2.bias"] = EspdlTensor.from_array(
        b.name, vals, b.data_type, b.exponents, b.doc_string
    )
    assert violations(m) == []  # no target: target-specific rules skipped
    assert violations(m, target="esp32p4") == []  # 32-bit bias
    _one(violations(m, target="esp32s3"), "node '/fc2/Gemm'", "20-bit bias range [-524288, 524287]")


def test_per_channel_only_for_conv_gemm(shared):
    m = _read(shared, "espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")
    rq = next(n for n in m.graph.nodes if n.op_type == "RequantizeLinear")
    m.graph.initializers[rq.inputs[1]].exponents = [0, 0]
    _one(
        violations(m), f"initializer '{rq.inputs[1]}' has 2 exponents", f"node '{rq.name}' (RequantizeLinear)"
    )


def test_per_channel_count(shared):
    m = _read(shared, *GEMM)
    m.graph.initializers["fc2.weight"].exponents = [-7] * 63
    _one(violations(m), "initializer 'fc2.weight'", "63 exponents for 64 output channels")


def test_initializer_needs_exponent(shared):
    m = _read(shared, *GEMM)
    m.graph.initializers["fc1.bias"].exponents = []
    _one(violations(m), "initializer 'fc1.bias' has no exponents")


def test_initializer_byte_length(shared):
    m = _read(shared, *GEMM)
    w = m.graph.initializers["fc2.weight"]
    w.raw = w.raw[:-1]
    _one(violations(m), "initializer 'fc2.weight'", "raw data holds 4095 bytes", "need 4096")


def test_initializer_padding(shared):
    m = _read(shared, *GEMM)
    b = m.graph.initializers["fc3.bias"]
    assert len(b.raw) + len(b.raw_padding) == 16
    b.raw_padding = b"\0" * 4
    _one(violations(m), "initializer 'fc3.bias'", "not padded to the next multiple of 16")


def test_rank0_dims_only_in_strict_mode(shared):
    m = _read(shared, "espdl-zoo", "pp_ocr_v6_rec_s16_p4.espdl")
    assert violations(m) == []
    strict = violations(m, strict=True)
    assert len(strict) == 12 and all("rank-0 dims []" in v for v in strict)


def test_initializer_used_once(shared):
    m = _read(shared, *GEMM)
    m.graph.nodes[1].inputs[2] = "fc1.bias"
    found = violations(m)
    assert len(found) == 2, found
    _any(found, "initializer 'fc1.bias' is an input of 2 nodes (/fc1/Gemm, /fc2/Gemm)")
    _any(found, "initializer 'fc2.bias' is not used")


def test_gemm_weight_rank(shared):
    m = _read(shared, *GEMM)
    m.graph.initializers["fc2.weight"].dims = [64, 64]
    _one(violations(m), "node '/fc2/Gemm'", "dims [64, 64]", "[1, 1, C, N]")


# ------------------------------------------------------------------------------------ LUTs
def test_lut_exponent_and_entries(shared):
    m = _read(shared, "reference", "resnet20_esp32p4_s8", "resnet20_esp32p4_s8.espdl")
    relu = next(n for n in m.graph.nodes if n.op_type == "Relu")
    users = [n.name for n in m.graph.nodes if n.attr("lut") == relu.attr("lut")]
    lut = m.graph.initializers[relu.attr("lut")]
    lut.exponents = [lut.exponents[0] + 1]
    found = violations(m)
    assert len(found) == len(users) and all("must equal the output exponent" in v for v in found)
    _any(found, f"node '{relu.name}' (Relu)")
    lut.exponents = [lut.exponents[0] - 1]
    lut.raw, lut.dims, lut.raw_padding = lut.raw[:255], [255], b""
    found = violations(m)
    _any(found, f"node '{relu.name}' (Relu)", "has 255 entries, needs 256")


def test_int16_lut_entries(shared):
    m = _read(shared, "espdl-zoo", "pp_ocr_v6_rec_s16_p4.espdl")
    node = next(n for n in m.graph.nodes if n.op_type == "LUT")
    lut = m.graph.initializers[node.attr("lut")]
    assert lut.numel == 2049  # step 32 (§3.3)
    lut.raw, lut.dims, lut.raw_padding = lut.raw[:-2], [2048], b""
    _one(violations(m), f"node '{node.name}' (LUT)", "2048 entries", "power-of-two step")


def test_lut_must_exist(shared):
    m = _read(shared, "reference", "resnet20_esp32p4_s8", "resnet20_esp32p4_s8.espdl")
    relu = next(n for n in m.graph.nodes if n.op_type == "Relu")
    relu.attributes["lut"] = "nope"
    _one(violations(m), f"node '{relu.name}' (Relu)", "lut 'nope' is not an initializer")


# ------------------------------------------------------------------------------------ activations
def test_activation_single_exponent(shared):
    m = _read(shared, *GEMM)
    m.graph.value("/Relu_1_output_0").exponents = [-5, -5]
    _one(violations(m), "activation '/Relu_1_output_0' has 2 exponents")


def test_activation_dtype_matches_quant_type(shared):
    m = _read(shared, *GEMM)
    m.graph.value("/Relu_output_0").elem_type = TensorDataType.INT16
    found = violations(m)
    assert len(found) == 2, found
    _any(found, "node '/fc1/Gemm'", "output '/Relu_output_0' is INT16 but quant_type S8 produces INT8")
    _any(found, "node '/fc2/Gemm'", "input '/Relu_output_0' is INT16", "expects INT8")


def test_graph_input_static_shape(shared):
    m = _read(shared, *GEMM)
    m.graph.inputs[0].shape = ["batch", 1]
    _one(violations(m), "graph input 'onnx::Gemm_0' has shape ['batch', 1]", "static")


def test_graph_input_value_info(shared):
    m = _read(shared, *GEMM)
    m.graph.value_info = [v for v in m.graph.value_info if v.name != "onnx::Gemm_0"]
    found = violations(m)
    _any(found, "graph input 'onnx::Gemm_0' has no ValueInfo")


# ------------------------------------------------------------------------------------ test values
def test_test_input_named_after_graph_input(shared):
    m = _read(shared, *GEMM)
    t = m.graph.test_inputs.pop("onnx::Gemm_0")
    t.name = "x"
    m.graph.test_inputs["x"] = t
    found = violations(m)
    assert len(found) == 2, found
    _any(found, "graph input 'onnx::Gemm_0' has no test input value")
    _any(found, "test input 'x' is not named after a graph input")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("exponent", "test output '11' has exponent -6 but the tensor's exponent is -7"),
        ("dims", "test output '11' has dims [1] but the tensor's shape is [1, 1]"),
        ("dtype", "test output '11' is INT16 but the tensor is INT8"),
    ],
)
def test_test_output_matches_tensor(shared, edit, needle):
    m = _read(shared, *GEMM)
    t = m.graph.test_outputs["11"]
    if edit == "exponent":
        t.exponents = [-6]
    elif edit == "dims":
        t.dims = [1]
    else:
        m.graph.test_outputs["11"] = EspdlTensor.from_array(
            "11", t.values().reshape(1, 1), TensorDataType.INT16, [-7]
        )
    _one(violations(m), needle)
