"""ONNX frontend: copies, shapes, old IR/opsets and bad input."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from espq.errors import EspqError, ModelLoadError, ShapeError
from espq.frontends import load_onnx, to_onnx
from espq.ir.onnx_io import graph_from_onnx


def _tiny_model(opset: int = 13, dynamic: bool = False, init_as_input: bool = False) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w")
    dims = ["N", 3] if dynamic else [1, 3]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Gemm", ["x", "w"], ["g"], transB=1, name="gemm"),
        helper.make_node("Relu", ["g"], ["y"], name="relu"),
    ]
    inputs = [x]
    if init_as_input:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]))
    g = helper.make_graph(nodes, "tiny", inputs, [y], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 3 if init_as_input else 7
    return m


def test_load_onnx_file_is_not_modified(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_tiny_model(), path)
    before = path.read_bytes()
    os.utime(path, (1_000_000, 1_000_000))
    listing = sorted(os.listdir(tmp_path))
    proto = load_onnx(path)
    assert path.read_bytes() == before
    assert os.stat(path).st_mtime == 1_000_000
    assert sorted(os.listdir(tmp_path)) == listing
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "Relu"]


def test_load_onnx_proto_is_not_modified():
    model = _tiny_model(dynamic=True)
    before = model.SerializeToString()
    load_onnx(model, input_shape=[1, 3])
    assert model.SerializeToString() == before


def test_dynamic_shape_without_input_shape_names_the_input():
    with pytest.raises(ShapeError, match=r"input 'x'.*dynamic.*input_shape"):
        load_onnx(_tiny_model(dynamic=True))


def test_dynamic_shape_fixed_by_input_shape_gives_static_shapes():
    g = graph_from_onnx(load_onnx(_tiny_model(dynamic=True), input_shape=[1, 3]))
    assert g.shape("x") == (1, 3)
    assert g.shape("y") == (1, 4)


def test_wrong_rank_input_shape():
    with pytest.raises(ShapeError, match="rank 2"):
        load_onnx(_tiny_model(dynamic=True), input_shape=[1, 3, 4])


def test_old_ir_initializers_listed_as_inputs_are_constants():
    g = graph_from_onnx(load_onnx(_tiny_model(opset=9, init_as_input=True)))
    assert g.inputs == ["x"]
    assert "w" in g.initializers


def test_opset_7_model_is_accepted_and_upgraded():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Relu", ["x"], ["r"])
    node2 = helper.make_node("Add", ["r", "x"], ["y"])
    m = helper.make_model(
        helper.make_graph([node, node2], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 7)]
    )
    m.ir_version = 3
    out = load_onnx(m)
    assert out.opset_import[0].version >= 13
    xin = np.array([[-1.0, 2.0, -3.0, 4.0]], np.float32)
    sess = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(sess.run(None, {"x": xin})[0], [[-1.0, 4.0, -3.0, 8.0]])


def test_opset_below_7_is_refused():
    m = _tiny_model(opset=6)
    with pytest.raises(ModelLoadError, match="opset 6"):
        load_onnx(m)


def test_not_an_onnx_file(tmp_path):
    p = tmp_path / "notes.onnx"
    p.write_text("hello, this is not a model\n" * 10)
    with pytest.raises(ModelLoadError, match="notes.onnx"):
        load_onnx(p)


def test_truncated_onnx_file(tmp_path):
    p = tmp_path / "cut.onnx"
    data = _tiny_model().SerializeToString()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        load_onnx(p)


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_unknown_model_type():
    with pytest.raises(EspqError, match="cannot load a model of type int"):
        to_onnx(42)


@pytest.mark.parametrize(
    "name, shape",
    [
        ("cifar10_resnet20.onnx", None),
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", [1, 3, 48, 192]),
        ("nudenet_yolov8n_320.onnx", [1, 3, 320, 320]),
    ],
)
def test_real_models_keep_their_function(shared, name, shape):
    path = shared("models", name)
    proto = load_onnx(path, shape)
    g = graph_from_onnx(proto)
    assert all(g.shape(t) is not None for n in g.nodes for t in n.outputs if t)
    ishape = g.shape(g.inputs[0])
    x = np.random.default_rng(0).standard_normal(ishape).astype(np.float32)
    ref_model = onnx.load(path)
    ref = ort.InferenceSession(ref_model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    r = ref.run(None, {ref_model.graph.input[0].name: x})
    o = got.run(None, {g.inputs[0]: x})
    for a, b in zip(r, o):
        assert np.max(np.abs(a - b)) <= 1e-4 * max(1.0, np.max(np.abs(a)))
