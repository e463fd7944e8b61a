"""Latency and memory model (issue 19 item 4): per-node cost features, fitted coefficients, estimate."""

from __future__ import annotations

import copy
import math

import pytest

from espq import espdl
from espq.espdl.cost import node_costs
from espq.targets import latency_table
from espq.targets.latency import NodeCost, feature_vector


def _conv_macs_from_attributes(model: espdl.EspdlModel) -> dict[str, int]:
    """Independent count: H_out * W_out * C_out * kh * kw * C_in / group from kernel_shape and shapes."""
    g = model.graph
    vi = {v.name: v for v in (*g.inputs, *g.value_info, *g.outputs)}
    out = {}
    for n in g.nodes:
        if n.op_type == "Conv":
            o, i = vi[n.outputs[0]].shape, vi[n.inputs[0]].shape
            out[n.name] = math.prod(o) * math.prod(n.attr("kernel_shape")) * i[-1] // n.attr("group", 1)
    return out


@pytest.mark.parametrize(
    "name, conv_macs",
    [
        ("imagenet_cls_mobilenetv2_s8_v1_p4.espdl", 299_494_272),
        ("coco_detect_yolo11n_320_s8_v1_p4.espdl", 809_998_400),
        ("pp_ocr_v6_rec_s16_p4.espdl", 161_870_720),
    ],
)
def test_conv_macs_match_kernel_shapes(shared, name, conv_macs):
    m = espdl.read(shared("espdl-zoo", name))
    costs = {c.name: c for c in node_costs(m)}
    ref = _conv_macs_from_attributes(m)
    assert {n: costs[n].macs for n in ref} == ref
    assert sum(ref.values()) == conv_macs


def test_mobilenetv2_features(shared):
    m = espdl.read(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl"))
    costs = node_costs(m)
    by_name = {c.name: c for c in costs}
    first = by_name["/features/features.0/features.0.0/Conv"]  # 3x3 s2, 3 -> 32 channels, 224 -> 112
    assert first.macs == 112 * 112 * 32 * 27
    assert (first.input_bytes, first.output_bytes) == (224 * 224 * 3, 112 * 112 * 32)
    assert first.param_bytes == sum(len(m.graph.initializers[t].raw) for t in first_inputs(m, first.name))
    dw = by_name["/features/features.1/conv/conv.0/conv.0.0/Conv"]  # depthwise 3x3 on 32 channels
    assert dw.depthwise and not first.depthwise and dw.macs == 112 * 112 * 32 * 9
    gemm = next(c for c in costs if c.op_type == "Gemm")
    assert gemm.macs == 1280 * 1000
    assert sum(c.macs for c in costs) == 300_774_272  # ~300 M MACs: MobileNetV2's published 300 M
    assert not any(c.int16 or c.float_fallback for c in costs)
    adds = [c for c in costs if c.op_type == "Add"]
    assert adds and all(c.macs == 0 and c.input_bytes == 2 * c.output_bytes for c in adds)


def first_inputs(model: espdl.EspdlModel, name: str) -> list[str]:
    return [t for t in model.graph.node(name).inputs if t in model.graph.initializers]


def test_int16_flags(shared):
    m = espdl.read(shared("espdl-zoo", "pp_ocr_v6_rec_s16_p4.espdl"))
    costs = node_costs(m)
    s16 = [c for c in costs if c.quant_type == "S16"]
    assert s16 and all(c.int16 for c in s16)
    conv = next(c for c in s16 if c.op_type == "Conv")
    assert conv.output_bytes == 2 * math.prod(m.graph.value(m.graph.node(conv.name).outputs[0]).shape)


def test_float_fallback_flag(shared):
    m = copy.deepcopy(espdl.read(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")))
    node = next(n for n in m.graph.nodes if n.op_type == "Add")
    node.attributes["quant_type"] = "F32"
    cost = next(c for c in node_costs(m) if c.name == node.name)
    assert cost.float_fallback and not cost.int16
    v = feature_vector(cost)
    assert v[latency_table.GROUP_INDEX["float_elements"]] == cost.elements > 0
    assert v[latency_table.GROUP_INDEX["moved_bytes"]] == 0


def test_feature_groups():
    def cost(op: str, **kw) -> NodeCost:
        base = dict(name="n", op_type=op, quant_type="S8", macs=0, input_bytes=10, output_bytes=6)
        return NodeCost(**{**base, "param_bytes": 0, "elements": 16, **kw})

    idx = latency_table.GROUP_INDEX
    assert feature_vector(cost("Conv", macs=100))[idx["conv_macs_s8"]] == 100
    assert feature_vector(cost("Conv", macs=100, depthwise=True))[idx["dw_macs_s8"]] == 100
    assert feature_vector(cost("Gemm", macs=7))[idx["gemm_macs_s8"]] == 7
    assert feature_vector(cost("Conv", macs=9, int16=True, quant_type="S16"))[idx["macs_s16"]] == 9
    assert feature_vector(cost("Add"))[idx["moved_bytes"]] == 16
    assert feature_vector(cost("Reshape")).tolist() == [0, 0, 0, 0, 0, 0, 1]
