"""check_model: quantized / float / unsupported per node, overrides, and real models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

import espq
from espq.errors import ConfigError, UnsupportedOpError
from espq.ir.graph import Graph, Node, TensorInfo
from espq.ir.onnx_io import graph_from_onnx
from espq.targets import TARGETS, QuantType, check_model
from espq.targets.ops_table import CANONICALISE_FIX, CONSTANT_FOLD_FIX

F32 = np.dtype(np.float32)


def _w(*shape: int) -> np.ndarray:
    return np.ones(shape, np.float32)


def _graph() -> Graph:
    """A small CNN: three unsupported nodes (grouped conv, cubic resize, Erf), one float node (Sqrt)."""
    nodes = [
        Node("conv_ok", "Conv", ["x", "w1", "b1"], ["t1"], {"group": 1, "pads": [1, 1, 1, 1]}),
        Node("relu", "Relu", ["t1"], ["t2"]),
        Node("conv_grouped", "Conv", ["t2", "wg"], ["t3"], {"group": 2}),
        Node("resize_cubic", "Resize", ["t3", "", "scales"], ["t4"], {"mode": "cubic"}),
        Node("erf", "Erf", ["t4"], ["t5"]),
        Node("sqrt", "Sqrt", ["t5"], ["t6"]),
        Node("gap", "GlobalAveragePool", ["t6"], ["t7"]),
        Node("flat", "Flatten", ["t7"], ["t8"]),
        Node("fc", "Gemm", ["t8", "wf", "bf"], ["t9"], {"transB": 1}),
        Node("softmax", "Softmax", ["t9"], ["y"], {"axis": 1}),
    ]
    inits = {
        "w1": _w(8, 8, 3, 3),
        "b1": _w(8),
        "wg": _w(8, 4, 3, 3),
        "scales": np.array([1, 1, 2, 2], np.float32),
        "wf": _w(10, 8),
        "bf": _w(10),
    }
    values = {"x": TensorInfo(F32, (1, 8, 16, 16))}
    return Graph(nodes, inits, values, ["x"], ["y"])


def _fixed(g: Graph) -> Graph:
    """The same graph with the three problems removed."""
    g = g.copy()
    g.initializers["wg"] = _w(8, 1, 3, 3)
    g.node("conv_grouped").attrs["group"] = 8  # depthwise
    g.node("resize_cubic").attrs.update(
        mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    )
    g.bypass(g.node("erf"))
    return g


def test_all_unsupported_nodes_in_one_error():
    with pytest.raises(UnsupportedOpError) as err:
        check_model(_graph(), "esp32p4")
    msg = str(err.value)
    assert msg.startswith("3 node(s) cannot run on esp32p4 (8-bit):")
    for name, op in (("conv_grouped", "Conv"), ("resize_cubic", "Resize"), ("erf", "Erf")):
        assert f"node {name!r} ({op})" in msg
    assert "split it into 2 group-1 Convs" in msg and "mode 'linear' or 'nearest'" in msg and "Gelu" in msg
    report = err.value.report
    assert [n.name for n in report.unsupported] == ["conv_grouped", "resize_cubic", "erf"]
    assert report.counts() == {"quantized": 6, "float": 1, "unsupported": 3, "S8": 6, "S16": 0}


def test_classification():
    report = check_model(_fixed(_graph()), "esp32p4")
    assert report.ok
    assert report.node("sqrt").status == "float" and report.node("sqrt").quant_type is QuantType.F32
    conv = report.node("conv_ok")
    assert conv.status == "quantized" and conv.quant_type is QuantType.S8 and conv.per_channel
    assert not report.node("relu").per_channel
    sm = report.node("softmax")
    assert sm.status == "quantized" and sm.float_output and "float32" in sm.notes[0]
    s3 = check_model(_fixed(_graph()), "esp32s3", bits=16)
    assert not s3.node("conv_ok").per_channel
    assert s3.counts() == {"quantized": 8, "float": 1, "unsupported": 0, "S8": 0, "S16": 8}
    # S16 Resize carries the informational note, S8 does not
    assert s3.node("resize_cubic").notes and not report.node("resize_cubic").notes
    summary = report.summary()
    assert "9 nodes, 8 quantized (S8 8, S16 0), 1 float, 0 unsupported" in summary
    assert "sqrt (Sqrt)" in summary
    d = report.to_dict()
    assert json.loads(json.dumps(d))["counts"]["float"] == 1 and d["target"] == "esp32p4"


def test_overrides():
    g = _fixed(_graph())
    report = check_model(g, "esp32c3", overrides={"relu": 16, "gap": "float", "sqrt": 8})
    assert report.node("relu").quant_type is QuantType.S16
    assert report.node("gap").status == "float"
    assert report.node("sqrt").status == "quantized" and report.node("sqrt").quant_type is QuantType.S8
    with pytest.raises(UnsupportedOpError, match="Conv has no float32 kernel"):
        check_model(g, "esp32c3", overrides={"conv_ok": "float"})
    with pytest.raises(ConfigError, match=r"'relu_1' \(did you mean 'relu'\?\)") as err:
        check_model(g, "esp32c3", overrides={"relu_1": 16, "nope": 8})
    assert "'nope'" in str(err.value)
    with pytest.raises(ConfigError, match="8, 16 or 'float'"):
        check_model(g, "esp32c3", overrides={"relu": 12})
    with pytest.raises(ConfigError, match="bits must be 8 or 16"):
        check_model(g, "esp32c3", bits=4)
    with pytest.raises(ConfigError, match="valid targets"):
        check_model(g, "esp8266")


def test_non_strict_returns_report():
    report = check_model(_graph(), "c", strict=False)
    assert not report.ok and len(report.unsupported) == 3


def test_shape_glue_and_uncanonicalised_ops():
    nodes = [
        Node("bn", "BatchNormalization", ["x", "s", "b", "m", "v"], ["t0"]),
        Node("shape", "Shape", ["t0"], ["sh"]),
        Node("gather", "Gather", ["sh", "idx"], ["n"], {"axis": 0}),
        Node("unsq", "Unsqueeze", ["n", "ax"], ["n1"]),
        Node("cat", "Concat", ["n1", "minus1"], ["newshape"], {"axis": 0}),
        Node("reshape", "Reshape", ["t0", "newshape"], ["t1"]),
        Node("max", "Max", ["t1", "t1"], ["y"]),
    ]
    inits = {k: _w(3) for k in ("s", "b", "m", "v")}
    inits.update(idx=np.array(0), ax=np.array([0]), minus1=np.array([-1]))
    g = Graph(nodes, inits, {"x": TensorInfo(F32, (1, 3, 4, 4))}, ["x"], ["y"])
    report = check_model(g, "esp32s3", strict=False)
    by = {n.name: n for n in report.nodes}
    assert all(n.status == "unsupported" for n in report.nodes)
    assert by["bn"].issues[0].fix == CANONICALISE_FIX
    for name in ("shape", "gather", "unsq", "cat"):
        assert by[name].issues[0].fix == CONSTANT_FOLD_FIX, name
    assert "must be a constant" in by["reshape"].issues[0].reason
    assert by["reshape"].issues[0].fix == CONSTANT_FOLD_FIX
    assert "Relu(a - b) + b" in by["max"].issues[0].fix


@pytest.fixture(scope="module")
def real_graphs():
    models = Path(__file__).resolve().parents[2].parent / "shared" / "models"
    names = ("cifar10_resnet20", "mobilenetv2_espdl_zoo_float")
    if not all((models / f"{m}.onnx").exists() for m in names):
        pytest.skip(f"models not present in {models}")
    return {m: graph_from_onnx(onnx.load(models / f"{m}.onnx")) for m in names}


@pytest.mark.parametrize("target", list(TARGETS))
def test_real_models_have_no_unsupported_nodes(real_graphs, target):
    resnet = check_model(real_graphs["cifar10_resnet20"], target)
    assert resnet.counts() == {"quantized": 54, "float": 0, "unsupported": 0, "S8": 54, "S16": 0}
    mbv2 = check_model(real_graphs["mobilenetv2_espdl_zoo_float"], target, bits=16)
    assert mbv2.counts() == {"quantized": 100, "float": 0, "unsupported": 0, "S8": 0, "S16": 100}
    per_channel = sum(n.per_channel for n in mbv2.nodes)
    assert per_channel == (53 if TARGETS[target].per_channel_weights else 0)  # 52 Conv + 1 Gemm


def test_espressif_op_tests_pass_the_check():
    """Every float ONNX model of Espressif's op-test suite passes for the target it was exported for;
    only ConvTranspose needs espq's canonicalisation first (esp_dl §3.1)."""
    root = Path(__file__).resolve().parents[2].parent / "shared" / "espdl-optests"
    if not root.exists():
        pytest.skip(f"{root} not present")
    checked = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        target, bits = folder.name.rsplit("_s", 1)
        for path in sorted(folder.glob("*/*.onnx")):
            report = check_model(graph_from_onnx(onnx.load(path)), target, bits=int(bits), strict=False)
            assert {n.op_type for n in report.unsupported} <= {"ConvTranspose"}, (path, report.summary())
            checked += 1
    assert checked > 500


def test_check_model_accepts_a_model_path(tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("Erf", ["c"], ["y"], name="erf"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    with pytest.raises(ConfigError, match="espq.check_model"):
        check_model(path, "esp32s3")
    report = espq.check_model(path, "esp32s3", strict=False)
    assert report.node("conv").status == "quantized"
    assert report.node("erf").status == "unsupported"
