"""convtranspose_to_conv: ConvTranspose == numpy InsertZeros -> onnxruntime Conv (2-stage check)."""

from __future__ import annotations

import numpy as np
import pytest

from espq.ir.onnx_io import graph_to_onnx
from espq.ir.passes import convtranspose_to_conv
from espq.ir.passes.convtranspose_to_conv import convtranspose_weight_to_conv

try:
    from .test_passes_helpers import assert_close, build, insert_zeros_np, node, ops, rand, run, session
except ImportError:
    from test_passes_helpers import assert_close, build, insert_zeros_np, node, ops, rand, run, session

# (name, input spatial, C_in, C_out, group, kernel, attrs)
CASES = [
    ("s1_k3", (5, 6), 3, 4, 1, (3, 3), {"strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ("s2_k2", (4, 5), 3, 4, 1, (2, 2), {"strides": [2, 2]}),
    ("s2_k3_pad_asym", (5, 4), 2, 3, 1, (3, 3), {"strides": [2, 2], "pads": [1, 0, 0, 2]}),
    (
        "s3_k4_outpad",
        (3, 4),
        2,
        2,
        1,
        (4, 4),
        {"strides": [3, 3], "pads": [1, 1, 2, 1], "output_padding": [1, 2]},
    ),
    ("s2_k3_dil2", (4, 4), 2, 3, 1, (3, 3), {"strides": [2, 2], "dilations": [2, 2], "pads": [1, 2, 3, 0]}),
    (
        "s2_outpad_asym",
        (4, 5),
        2,
        2,
        1,
        (3, 3),
        {"strides": [2, 3], "output_padding": [1, 0], "pads": [1, 1, 1, 1]},
    ),
    ("depthwise_s2_k4", (4, 4), 4, 4, 4, (4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("depthwise_mult2", (3, 5), 3, 6, 3, (3, 2), {"strides": [2, 1], "pads": [0, 1, 1, 0]}),
    ("group2", (4, 3), 4, 6, 2, (3, 3), {"strides": [2, 2], "dilations": [1, 2]}),
    ("crop_negative_pad", (4, 4), 2, 2, 1, (2, 2), {"strides": [2, 2], "pads": [2, 0, 3, 1]}),
    ("same_upper", (3, 5), 2, 3, 1, (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ("same_lower", (3, 5), 2, 3, 1, (3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ("valid", (3, 3), 2, 3, 1, (3, 3), {"strides": [2, 2], "auto_pad": "VALID"}),
    ("output_shape", (3, 4), 2, 3, 1, (3, 3), {"strides": [2, 2], "output_shape": [8, 9]}),
    ("conv1d_s3", (7,), 3, 2, 1, (4,), {"strides": [3], "pads": [1, 2], "output_padding": [2]}),
]


def _case_graph(spatial, c_in, c_out, group, kernel, attrs, with_bias=True):
    inits = {"w": rand(c_in, c_out // group, *kernel, seed=3)}
    ins = ["x", "w"]
    if with_bias:
        inits["b"] = rand(c_out, seed=4)
        ins.append("b")
    g = build(
        [node("ConvTranspose", ins, ["y"], name="ct", group=group, **attrs)],
        inits,
        {"x": (1, c_in) + spatial},
        {"y": None},
    )
    return g


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_convtranspose_equals_insertzeros_then_conv(case):
    _, spatial, c_in, c_out, group, kernel, attrs = case
    g = _case_graph(spatial, c_in, c_out, group, kernel, attrs)
    x = rand(1, c_in, *spatial, seed=11)
    (ref,) = session(graph_to_onnx(g)).run(None, {"x": x})  # stage 0: ORT on the original ConvTranspose

    assert convtranspose_to_conv(g) == 1
    assert "ConvTranspose" not in ops(g)
    conv = next(n for n in g.nodes if n.op_type == "Conv")
    assert conv.attrs["strides"] == [1] * len(kernel) and conv.attrs["group"] == group
    assert conv.attrs["dilations"] == attrs.get("dilations", [1] * len(kernel))
    assert all(p >= 0 for p in conv.attrs["pads"])
    assert g.outputs == ["y"]

    iz = [n for n in g.nodes if n.op_type == "InsertZeros"]
    strides = attrs["strides"]
    assert len(iz) == (1 if max(strides) > 1 else 0)
    if iz:
        assert iz[0].attrs["stride"] == strides and iz[0].attrs["output_padding"] == [0] * len(kernel)
        # stage 1: numpy InsertZeros; stage 2: ORT on the remaining Conv(/Slice) graph
        z = insert_zeros_np(x, strides, [0] * len(kernel))
        rest = g.copy()
        rest.remove_node(next(n for n in rest.nodes if n.op_type == "InsertZeros"))
        rest.inputs = [iz[0].outputs[0]]
        rest.values[iz[0].outputs[0]] = rest.values["x"].copy()
        rest.values[iz[0].outputs[0]].shape = z.shape
        (out,) = session(graph_to_onnx(rest)).run(None, {iz[0].outputs[0]: z})
    else:
        (out,) = session(graph_to_onnx(g)).run(None, {"x": x})
    assert_close([ref], [out])
    if case[0] == "crop_negative_pad":
        assert ops(g) == ["InsertZeros", "Conv", "Slice"]


def test_weight_transform_layout_and_flip():
    w = np.arange(4 * 3 * 2 * 2, dtype=np.float32).reshape(4, 3, 2, 2)  # C_in 4, C_out/g 3, g = 2
    cw = convtranspose_weight_to_conv(w, group=2)
    assert cw.shape == (6, 2, 2, 2)
    # output channel 4 = group 1, j = 1; input channel 1 of that group = C_in index 3
    np.testing.assert_array_equal(cw[4, 1], w[3, 1, ::-1, ::-1])
    np.testing.assert_array_equal(cw[0, 0], w[0, 0, ::-1, ::-1])


def test_no_bias_and_non_constant_weight():
    g = _case_graph((3, 3), 2, 2, 1, (3, 3), {"strides": [2, 2]}, with_bias=False)
    x = rand(1, 2, 3, 3)
    (ref,) = session(graph_to_onnx(g)).run(None, {"x": x})
    assert convtranspose_to_conv(g) == 1
    assert len(next(n for n in g.nodes if n.op_type == "Conv").inputs) == 2
    assert_close([ref], run(g, {"x": x}))

    g = build(
        [node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        {},
        {"x": (1, 2, 3, 3), "w": (2, 2, 3, 3)},
        {"y": None},
    )
    assert convtranspose_to_conv(g) == 0


def test_auto_pad_without_static_shape_is_skipped():
    g = _case_graph((3, 3), 2, 2, 1, (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"})
    g.values["x"].shape = None
    assert convtranspose_to_conv(g) == 0


def test_test_helper_insertzeros_lowering_matches_numpy_reference():
    # the real-model tests run InsertZeros in onnxruntime as a 1x1 depthwise ConvTranspose; check it
    x = rand(1, 3, 4, 5)
    g = build(
        [node("InsertZeros", ["x"], ["y"], stride=[3, 2], output_padding=[1, 0])],
        {},
        {"x": x.shape},
        {"y": None},
    )
    (out,) = run(g, {"x": x})
    ref = insert_zeros_np(x, [3, 2], [1, 0])
    assert ref.shape == (1, 3, 4 + 2 * 3 + 1, 5 + 4)
    np.testing.assert_array_equal(out, ref)
