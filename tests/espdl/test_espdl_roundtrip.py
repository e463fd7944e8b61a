"""read → write → read: byte-identical re-encoding of Espressif's files, and the writer's rules."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from espq import espdl
from espq.espdl import AttributeType, EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl import TensorDataType as DT

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FILES = sorted((SHARED / "espdl-zoo").glob("*.espdl")) + sorted((SHARED / "reference").glob("*/*.espdl"))
OPTESTS = sorted((SHARED / "espdl-optests").glob("*/*/*.espdl"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_zoo_roundtrip_is_byte_identical(path: Path):
    data = path.read_bytes()
    model = espdl.read(data)
    out = espdl.write_bytes(model)
    again = espdl.read(out)
    assert again == model  # graph, attributes, exponents, tensor bytes
    assert [n.attr_types for n in again.graph.nodes] == [n.attr_types for n in model.graph.nodes]
    assert out == data


def test_all_optests_roundtrip_byte_identical():
    if not OPTESTS:
        pytest.skip("espdl-optests not present")
    differing = [p for p in OPTESTS if espdl.write_bytes(espdl.read(p)) != p.read_bytes()]
    assert differing == []


def test_legacy_vtable_rule_detected(shared):
    """Older files were built with flatbuffers 2.0 (vtables de-duplicated ignoring object size)."""
    old = espdl.read(shared("espdl-zoo", "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl"))
    new = espdl.read(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl"))
    assert old.legacy_vtables and not new.legacy_vtables
    original = shared("espdl-zoo", "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl").read_bytes()
    old.legacy_vtables = False
    modern = espdl.write_bytes(old)
    assert modern != original and len(modern) == 1808 and len(original) == 1792
    assert espdl.read(modern) == espdl.read(original)


def test_edited_graph_falls_back_to_default_order(shared):
    model = espdl.read(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_s3.espdl"))
    model.graph.nodes[0].attributes["extra"] = [1, 2, 3]
    gemm = next(n for n in model.graph.nodes if n.op_type == "Gemm")
    gemm.attributes["alpha"] = 1  # an int set on a FLOAT attribute stays FLOAT
    model.metadata_props["target"] = "esp32s3"
    removed = model.graph.value_info.pop()  # invalidates the recorded creation order
    model.graph.value_info.append(removed)
    model.graph.creation_order = None
    out = espdl.write_bytes(model)
    again = espdl.read(out)
    assert again == model and again.target == "esp32s3"
    assert again.graph.nodes[0].attr_types["extra"] == AttributeType.INTS
    again_gemm = next(n for n in again.graph.nodes if n.op_type == "Gemm")
    assert again_gemm.attr_types["alpha"] == AttributeType.FLOAT and again_gemm.attributes["alpha"] == 1.0
    assert espdl.write_bytes(again) == out  # deterministic and stable


def _small_model() -> EspdlModel:
    w = np.arange(-20, 20, dtype=np.int8).reshape(1, 1, 2, 20)
    weight = EspdlTensor.from_array("w", w, DT.INT8, [-7], "layout ==> (N/16)HWC16_UNALIGNED")
    bias = EspdlTensor.from_array("b", np.arange(20, dtype=np.int32), DT.INT32, [-12])
    node = EspdlNode(
        name="gemm",
        op_type="Gemm",
        inputs=["x", "w", "b"],
        outputs=["y"],
        attributes={
            "quant_type": "S8",
            "activation": "Relu",
            "alpha": 1.0,
            "transB": 0,
            "ints": [1, -2],
            "floats": [0.5, 1.5, 2.5],
            "strings": ["a", "bc"],
            "empty": [],
            "t": EspdlTensor.from_array("tt", np.array([1.5, 2.0], np.float32), DT.FLOAT, [0]),
        },
        attr_types={"empty": AttributeType.FLOATS},
    )
    x = EspdlValueInfo("x", DT.INT8, [1, 2], [-5])
    y = EspdlValueInfo("y", DT.INT8, [1, "n", None, 0], [-3])
    graph = EspdlGraph(
        name="tiny",
        nodes=[node],
        initializers={"w": weight, "b": bias},
        inputs=[x],
        outputs=[y],
        value_info=[x, y],
        test_inputs={"x": EspdlTensor.from_array("x", np.array([[3, -4]], np.int8), DT.INT8, [-5])},
        test_outputs={"y": EspdlTensor.from_array("y", np.zeros((1, 20), np.int8), DT.INT8, [-3])},
    )
    return EspdlModel(graph=graph, ir_version=8, model_version=3, metadata_props={"target": "esp32p4"})


def test_fresh_model_roundtrip_and_encoding_rules():
    model = _small_model()
    data = espdl.write_bytes(model)
    assert data[:4] == b"EDL2" and data[12:16] == b"\0\0\0\0"
    mode, size = struct.unpack_from("<II", data, 4)
    assert mode == 0 and size == len(data) - 16 and size % 16 == 0
    again = espdl.read(data)
    assert again == model
    assert again.target == "esp32p4" and again.model_version == 3
    assert again.graph.outputs[0].shape == [1, "n", None, 0]
    assert again.graph.nodes[0].attr_types["empty"] == AttributeType.FLOATS
    assert list(again.graph.nodes[0].attributes) == sorted(model.graph.nodes[0].attributes)
    assert again.graph.nodes[0].attributes["floats"] == [0.5, 1.5, 2.5]  # real float32, not float64
    # the raw_data body of every tensor is 16-byte aligned in the file (EDL2 header is 16 bytes)
    w = again.graph.initializers["w"]
    assert data.find(w.raw) % 16 == 0 and w.raw_padding == b"\0" * 8
    assert espdl.write_bytes(again) == data


def test_write_is_atomic_and_deterministic(tmp_path):
    model = _small_model()
    path = tmp_path / "m.espdl"
    espdl.write(model, path)
    first = path.read_bytes()
    espdl.write(model, path)
    assert path.read_bytes() == first == espdl.write_bytes(model)
    assert [p.name for p in tmp_path.iterdir()] == ["m.espdl"]
    assert espdl.read(path) == model


def test_edl1_roundtrip():
    model = _small_model()
    model.format = "EDL1"
    data = espdl.write_bytes(model)
    assert data[:4] == b"EDL1" and struct.unpack_from("<I", data, 8)[0] == len(data) - 12
    assert espdl.read(data) == model


def test_unstorable_attribute_raises():
    model = _small_model()
    model.graph.nodes[0].attributes["bad"] = {"a": 1}
    with pytest.raises(espdl.EspdlFormatError, match="attribute 'bad'"):
        espdl.write_bytes(model)


def test_typed_and_empty_tensor_storage():
    """Non-raw storage (ESP-PPQ's choice for empty tensors) survives a round trip."""
    model = _small_model()
    typed = EspdlTensor(
        "typed", [3], DT.INT8, np.array([-1, 0, 5], "<i4").tobytes(), [0], data_field="int32_data"
    )
    empty = EspdlTensor("empty", [0], DT.INT64, b"", [0], data_field="int64_data")
    bare = EspdlTensor("bare", [2, 0], DT.FLOAT, b"", [0], data_field="none")
    model.graph.initializers.update({"typed": typed, "empty": empty, "bare": bare})
    again = espdl.read(espdl.write_bytes(model))
    assert again == model
    inits = again.graph.initializers
    assert inits["typed"].values().tolist() == [-1, 0, 5] and inits["typed"].values().dtype == np.int8
    assert inits["empty"].values().shape == (0,) and inits["bare"].to_original().shape == (2, 0)
