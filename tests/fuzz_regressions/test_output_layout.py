"""Graph outputs come back from the integer runner in the model's ONNX layout, for every layout family
(issue 13, fuzz regressions *_Pad_*: a Pad graph output came back NHWC). Each model is
Conv (NHWC on the chip) → one op → graph output(s); ``qm.run`` and ``run_espdl`` must return the same
shapes and the same codes."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import espq

SHAPE = [1, 3, 4, 5]


def _i64(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


# op-after-Conv cases: (nodes after "c" [N=1, C=4, H=4, W=5], extra initializers, outputs with shapes)
CASES = {
    "Pad": (
        [helper.make_node("Pad", ["c", "pads"], ["y"])],
        [_i64("pads", [0, 0, 1, 2, 0, 0, 0, 1])],
        {"y": [1, 4, 5, 8]},
    ),
    "Slice_H": (
        [helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"])],
        [_i64("st", [1]), _i64("en", [3]), _i64("ax", [2])],
        {"y": [1, 4, 2, 5]},
    ),
    "Slice_C": (
        [helper.make_node("Slice", ["c", "st", "en", "ax"], ["y"])],
        [_i64("st", [1]), _i64("en", [3]), _i64("ax", [1])],
        {"y": [1, 2, 4, 5]},
    ),
    "Gather_C": (
        [helper.make_node("Gather", ["c", "idx"], ["y"], axis=1)],
        [_i64("idx", [0, 2])],
        {"y": [1, 2, 4, 5]},
    ),
    "Gather_scalar_W": (
        [helper.make_node("Gather", ["c", "i0"], ["y"], axis=3)],
        [numpy_helper.from_array(np.asarray(2, np.int64), "i0")],
        {"y": [1, 4, 4]},
    ),
    "ReduceMean_C": (
        [helper.make_node("ReduceMean", ["c", "ax"], ["y"], keepdims=1)],
        [_i64("ax", [1])],
        {"y": [1, 1, 4, 5]},
    ),
    "ReduceMax_H_drop": (
        [helper.make_node("ReduceMax", ["c", "ax"], ["y"], keepdims=0)],
        [_i64("ax", [2])],
        {"y": [1, 4, 5]},
    ),
    "Concat_C": ([helper.make_node("Concat", ["c", "c"], ["y"], axis=1)], [], {"y": [1, 8, 4, 5]}),
    "Softmax_C": ([helper.make_node("Softmax", ["c"], ["y"], axis=1)], [], {"y": [1, 4, 4, 5]}),
    "Split_C": (
        [helper.make_node("Split", ["c", "sp"], ["y", "z"], axis=1)],
        [_i64("sp", [1, 3])],
        {"y": [1, 1, 4, 5], "z": [1, 3, 4, 5]},
    ),
    "Transpose_to_NHWC": (
        [helper.make_node("Transpose", ["c"], ["y"], perm=[0, 2, 3, 1])],
        [],
        {"y": [1, 4, 5, 4]},
    ),
    "Transpose_HW": (
        [helper.make_node("Transpose", ["c"], ["y"], perm=[0, 1, 3, 2])],
        [],
        {"y": [1, 4, 5, 4]},
    ),
    "Flatten": ([helper.make_node("Flatten", ["c"], ["y"], axis=1)], [], {"y": [1, 80]}),
    "Relu": ([helper.make_node("Relu", ["c"], ["y"])], [], {"y": [1, 4, 4, 5]}),
    "Add_channel_const": (
        [helper.make_node("Add", ["c", "b"], ["y"])],
        [numpy_helper.from_array(np.asarray([0.5, -0.5, 1.0, 0.0], np.float32).reshape(1, 4, 1, 1), "b")],
        {"y": [1, 4, 4, 5]},
    ),
    "GlobalAveragePool": ([helper.make_node("GlobalAveragePool", ["c"], ["y"])], [], {"y": [1, 4, 1, 1]}),
    "MaxPool": (
        [helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
        [],
        {"y": [1, 4, 2, 2]},
    ),
    "Conv_and_Pad_outputs": (
        [helper.make_node("Pad", ["c", "pads"], ["y"])],
        [_i64("pads", [0, 0, 0, 1, 0, 0, 1, 0])],
        {"c": [1, 4, 4, 5], "y": [1, 4, 5, 6]},
    ),
}


def _model(case: str) -> onnx.ModelProto:
    nodes, inits, outs = CASES[case]
    w = np.random.default_rng(1).standard_normal((4, 3, 1, 1)).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1], name="conv")
    named = [
        helper.make_node(n.op_type, n.input, n.output, name=f"n_{n.op_type}", **_attrs(n)) for n in nodes
    ]
    g = helper.make_graph(
        [conv, *named],
        case,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in outs.items()],
        initializer=[numpy_helper.from_array(w, "w"), *inits],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    onnx.checker.check_model(m, full_check=True)
    return m


def _attrs(n: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("target", "bits"), [("esp32p4", 8), ("c", 16)])
def test_graph_outputs_in_onnx_layout(tmp_path, case, target, bits):
    rng = np.random.default_rng(7)
    calib = [rng.standard_normal(SHAPE).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(_model(case), calib, target=target, bits=bits, progress=False)
    path = tmp_path / "m.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    x = rng.standard_normal(SHAPE).astype(np.float32)
    ours, chip = qm.run(x), espq.run_espdl(path, x)
    want = CASES[case][2]
    assert set(chip) == set(want)
    for name, shape in want.items():
        assert ours[name].shape == chip[name].shape == tuple(shape), name
        spec = qm.plan.tensors.get(name)
        e = None if spec is None else spec.exponent
        if e is None:  # a float output (Softmax): the chip computes it in float32
            np.testing.assert_allclose(ours[name], chip[name], atol=1e-2)
            continue
        diff = np.abs(np.rint(ours[name] / 2.0**e) - np.rint(chip[name] / 2.0**e))
        assert diff.max() <= (0 if bits == 8 else 1), name
        assert np.abs(chip[name]).max() > 0, name  # not trivially zero
