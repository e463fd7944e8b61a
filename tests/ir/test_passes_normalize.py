"""normalize_attributes: old-opset attribute forms -> opset-18 input forms, checked with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from espq.errors import UnsupportedOpError
from espq.ir.passes import normalize_attributes

try:
    from .test_passes_helpers import build, check_equivalent, node, ops
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops


def _opset9_graph():
    nodes = [
        node("Slice", ["x"], ["s1"], starts=[0, 1], ends=[2, 3], axes=[0, -1]),
        node("Pad", ["s1"], ["p"], pads=[0, 0, 1, 0, 0, 0, 0, 1], value=0.5),
        node("Clip", ["p"], ["c"], min=-0.2, max=0.3),
        node("Upsample", ["c", "scales"], ["u"], mode="nearest"),
        node("Softmax", ["u"], ["sm"], axis=1),  # opset<13: softmax over the flattened [3*10*6] block
        node("ReduceMean", ["sm"], ["rm"], axes=[-1], keepdims=0),
        node("Unsqueeze", ["rm"], ["un"], axes=[0]),
        node("Squeeze", ["un"], ["sq"], axes=[0]),
        node("Split", ["sq"], ["sp1", "sp2"], axis=-1, split=[4, 6]),
        node("ReduceSum", ["sp2"], ["rs"], axes=[-1], keepdims=1),
        node("TopK", ["sp1"], ["tk", "tki"], k=2, axis=-1),
        node("Concat", ["tk", "rs"], ["cat"], axis=-1),
        node("Clip", ["cat"], ["y"], max=0.02),
    ]
    inits = {"scales": np.array([1, 1, 2, 2], np.float32)}
    shapes = {
        "s1": (2, 3, 4, 2),
        "p": (2, 3, 5, 3),
        "c": (2, 3, 5, 3),
        "u": (2, 3, 10, 6),
        "sm": (2, 3, 10, 6),
        "rm": (2, 3, 10),
        "un": (1, 2, 3, 10),
        "sq": (2, 3, 10),
        "sp1": (2, 3, 4),
        "sp2": (2, 3, 6),
        "rs": (2, 3, 1),
        "tk": (2, 3, 2),
    }
    g = build(nodes, inits, {"x": (2, 3, 4, 4)}, {"y": (2, 3, 3)}, opset=9)
    for k, s in shapes.items():
        g.values[k] = g.values["x"].copy()
        g.values[k].shape = s
    return g


def test_opset9_forms_become_opset18_inputs():
    g = _opset9_graph()
    before = g.copy()
    n = normalize_attributes(g)
    assert g.opset == 18
    assert n == 13
    by_out = {nd.outputs[0]: nd for nd in g.nodes}
    # no attribute forms left
    for nd in g.nodes:
        assert not {"axes", "split", "starts", "ends", "pads", "value", "min", "max", "k"} & set(nd.attrs), nd
    sl = by_out["s1"]
    assert [list(g.initializers[i]) for i in sl.inputs[1:]] == [[0, 1], [2, 3], [0, 3]]  # axis -1 -> 3
    assert list(g.initializers[by_out["p"].inputs[1]]) == [0, 0, 1, 0, 0, 0, 0, 1]
    assert float(g.initializers[by_out["p"].inputs[2]]) == 0.5
    clip = by_out["c"]
    assert [float(g.initializers[i]) for i in clip.inputs[1:]] == pytest.approx([-0.2, 0.3])
    assert g.initializers[clip.inputs[1]].dtype == np.float32
    assert by_out["y"].inputs[1] == "" and float(g.initializers[by_out["y"].inputs[2]]) == pytest.approx(0.02)
    up = by_out["u"]
    assert up.op_type == "Resize" and up.inputs[1] == "" and up.attrs["nearest_mode"] == "floor"
    assert list(g.initializers[by_out["rm"].inputs[1]]) == [3]
    assert list(g.initializers[by_out["un"].inputs[1]]) == [0]
    assert list(g.initializers[by_out["sp1"].inputs[1]]) == [4, 6] and by_out["sp1"].attrs["axis"] == 2
    assert list(g.initializers[by_out["tk"].inputs[1]]) == [2]
    assert by_out["cat"].attrs["axis"] == 2
    # the opset-9 Softmax(axis=1) on a 4-D tensor became Flatten -> Softmax(axis=1) -> Reshape
    assert ops(g)[4:7] == ["Flatten", "Softmax", "Reshape"]
    check_equivalent(before, g)
    assert normalize_attributes(g) == 0  # idempotent


def test_upsample_opset8_attribute_scales_and_resize_opset10():
    nodes = [node("Upsample", ["x"], ["u"], scales=[1.0, 1.0, 2.0, 3.0], mode="linear")]
    g = build(nodes, {}, {"x": (1, 2, 3, 4)}, {"u": (1, 2, 6, 12)}, opset=8)
    before = g.copy()
    assert normalize_attributes(g) == 1
    assert ops(g) == ["Resize"] and g.nodes[0].attrs["coordinate_transformation_mode"] == "asymmetric"
    check_equivalent(before, g)

    nodes = [node("Resize", ["x", "sc"], ["r"], mode="nearest")]
    g = build(nodes, {"sc": np.array([1, 1, 2, 2], np.float32)}, {"x": (1, 2, 3, 4)}, {"r": (1, 2, 6, 8)}, 10)
    before = g.copy()
    assert normalize_attributes(g) == 1
    assert g.nodes[0].inputs == ["x", "", "sc"]
    check_equivalent(before, g)


def test_split_without_sizes_gets_num_outputs_and_softmax_last_axis():
    nodes = [
        node("Split", ["x"], ["a", "b"], axis=1),
        node("LogSoftmax", ["a"], ["y"]),  # opset 13+: default axis -1 already
        node("Softmax", ["b"], ["z"], axis=-2),
    ]
    g = build(nodes, {}, {"x": (2, 4, 3)}, {"y": (2, 2, 3), "z": (2, 2, 3)}, opset=13)
    g.values["b"] = g.values["y"].copy()
    before = g.copy()
    assert normalize_attributes(g) == 2
    assert g.nodes[0].attrs["num_outputs"] == 2 and g.nodes[2].attrs["axis"] == 1
    check_equivalent(before, g)


def test_old_softmax_waits_for_rank_all_or_nothing():
    nodes = [node("Squeeze", ["x"], ["s"], axes=[0]), node("Softmax", ["s"], ["y"], axis=1)]
    g = build(nodes, {}, {"x": None}, {"y": None}, opset=11)
    assert normalize_attributes(g) == 0
    assert g.opset == 11 and "axes" in g.nodes[0].attrs  # nothing half-converted

    nodes = [node("Softmax", ["x"], ["y"], axis=-1)]  # last axis: no rank needed
    g = build(nodes, {}, {"x": None}, {"y": None}, opset=11)
    assert normalize_attributes(g) == 1 and g.opset == 18


def test_too_old_opset_and_spatial_bn_raise():
    g = build([node("Relu", ["x"], ["y"])], {}, {"x": (2,)}, {"y": (2,)}, opset=6)
    with pytest.raises(UnsupportedOpError, match="opset 6"):
        normalize_attributes(g)
    bn = node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], spatial=0)
    g = build([bn], {}, {"x": (1, 2, 3)}, {"y": (1, 2, 3)}, opset=8)
    with pytest.raises(UnsupportedOpError, match="spatial=0"):
        normalize_attributes(g)


def test_new_form_with_negative_constant_axes_made_positive():
    nodes = [node("ReduceMax", ["x", "ax"], ["y"], keepdims=0)]
    g = build(nodes, {"ax": np.array([-1, -2], np.int64)}, {"x": (2, 3, 4)}, {"y": (2,)})
    before = g.copy()
    assert normalize_attributes(g) == 1
    assert sorted(g.initializers[g.nodes[0].inputs[1]]) == [1, 2]
    check_equivalent(before, g)
    assert normalize_attributes(g) == 0
