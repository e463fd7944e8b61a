"""Latency and memory model (issue 19 item 4): per-node cost features, fitted coefficients, estimate."""

from __future__ import annotations

import copy
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from espq import espdl
from espq.errors import ConfigError
from espq.espdl.cost import estimate as estimate_file
from espq.targets import latency_table
from espq.targets.cost import NodeCost, node_costs
from espq.targets.latency import build_estimate, estimate, feature_vector


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
    assert (first.kernel, first.in_channels, first.out_channels) == (9, 3, 32)
    pointwise = by_name["/features/features.1/conv/conv.1/Conv"]
    assert (pointwise.kernel, pointwise.in_channels, pointwise.out_channels) == (1, 32, 16)
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
    requant = next(n for n in m.graph.nodes if n.op_type == "RequantizeLinear")
    requant.attributes["quant_type"] = "F32"  # a conversion to float is not a float fallback
    costs = {c.name: c for c in node_costs(m)}
    cost = costs[node.name]
    assert cost.float_fallback and not cost.int16
    assert not costs[requant.name].float_fallback
    v = feature_vector(cost)
    assert v[latency_table.GROUP_INDEX["float_elements"]] == cost.elements > 0
    assert v[latency_table.GROUP_INDEX["moved_bytes"]] == 0


def test_feature_groups():
    def cost(op: str, **kw) -> NodeCost:
        base = dict(name="n", op_type=op, quant_type="S8", macs=0, input_bytes=10, output_bytes=6)
        return NodeCost(**{**base, "param_bytes": 0, "elements": 16, **kw})

    idx = latency_table.GROUP_INDEX
    ch = {"in_channels": 32, "out_channels": 64}
    assert feature_vector(cost("Conv", macs=100, kernel=9, **ch))[idx["conv3x3_macs"]] == 100
    assert feature_vector(cost("Conv", macs=100, kernel=25, **ch))[idx["conv_other_macs"]] == 100
    assert feature_vector(cost("Gemm", macs=7, param_bytes=5, **ch))[idx["conv1x1_macs"]] == 7
    assert feature_vector(cost("Gemm", macs=7, param_bytes=5, **ch))[idx["weight_bytes"]] == 5
    unaligned = {"in_channels": 24, "out_channels": 64}  # 24 % 16 != 0: ESP-DL's unaligned kernel
    v = feature_vector(cost("Conv", macs=100, kernel=9, **unaligned))
    assert (v[idx["conv3x3_macs"]], v[idx["unaligned_extra_macs"]]) == (100, 100)
    v = feature_vector(cost("Conv", macs=100, depthwise=True, **unaligned))  # depthwise: no alignment extra
    assert (v[idx["dw_macs"]], v[idx["unaligned_extra_macs"]]) == (100, 0)
    v = feature_vector(cost("Conv", macs=9, int16=True, quant_type="S16", **ch))
    assert (v[idx["conv1x1_macs"]], v[idx["int16_extra_macs"]]) == (18, 9)  # 8 int16 lanes vs 16 int8
    assert feature_vector(cost("Add"))[idx["moved_bytes"]] == 16
    assert feature_vector(cost("Reshape")).tolist() == [0] * (len(latency_table.GROUPS) - 1) + [1]


def test_published_records():
    recs = latency_table.PUBLISHED
    by_target = {t: [r for r in recs if r.target == t] for t in ("esp32p4", "esp32s3")}
    assert (len(by_target["esp32p4"]), len(by_target["esp32s3"])) == (28, 22)
    assert len({(r.path, r.target) for r in recs}) == len(recs)
    ms = {(r.path.rsplit("/", 1)[1], r.target): r.ms for r in recs}
    assert ms["coco_detect_yolo11n_320_s8_v1.espdl", "esp32p4"] == 550.1
    assert ms["coco_detect_yolo11n_320_s8_v1.espdl", "esp32s3"] == 6161.8
    # single-core rows (ESP-DL's default run mode); the dual-core 223.0 / 867.0 are not fitted
    assert ms["imagenet_cls_mobilenetv2_s8_v1.espdl", "esp32p4"] == 326.6
    assert ms["imagenet_cls_mobilenetv2_s8_v1.espdl", "esp32s3"] == 1309.5
    for r in recs:
        assert (
            r.ms > 0 and f"/models/{r.component}/" in f"/{r.path}" and latency_table.ESP_DL_COMMIT in r.source
        )
        assert ("/p4/" in r.path) == (r.target == "esp32p4")
    assert all(v >= 0 for c in latency_table.COEFFICIENTS.values() for v in c.values())
    assert set(latency_table.COEFFICIENTS) == {"esp32p4", "esp32s3"}
    for target, floors in latency_table.FLOORS.items():
        assert all(latency_table.COEFFICIENTS[target][g] >= v for g, v in floors.items())


def _estimate(shared, name: str, target: str | None):
    m = espdl.read(shared("espdl-zoo", name))
    return build_estimate(node_costs(m), target, 0, 0)


@pytest.mark.parametrize(
    "name, target, published, fitted",
    [
        ("coco_detect_yolo11n_320_s8_v1_p4.espdl", "esp32p4", 550.1, 528.4),
        ("human_face_detect_msr_s8_v1_p4.espdl", "esp32p4", 13.1, 13.2),
        ("espdet_pico_224_224_cat_s3.espdl", "esp32s3", 123.9, 142.0),
        ("imagenet_cls_mobilenetv2_s8_v1_p4.espdl", "esp32p4", 326.6, 216.7),  # worst P4 fit: -34 %
    ],
)
def test_fitted_prediction(shared, name, target, published, fitted):
    est = _estimate(shared, name, target)
    assert est.ms == pytest.approx(fitted, abs=0.1)
    assert abs(est.ms / published - 1) < 0.35
    assert est.ms == pytest.approx(sum(ms for _n, _o, ms in est.per_node))
    assert len(est.per_node) == len(espdl.read(shared("espdl-zoo", name)).graph.nodes)


def test_unfitted_target_is_nan_with_note(shared):
    est = _estimate(shared, "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl", "esp32")
    assert math.isnan(est.ms) and "no published ESP-DL latencies for esp32" in est.note
    assert est.macs == 16 * 16


def test_coefficients_reproduce_the_fit():
    """The committed table equals bench/latency_fit.py's fit on the cached esp-dl zoo files."""
    fit_mod = _bench()
    zoo = fit_mod.zoo_dir()
    if not all((zoo / r.path).exists() for r in latency_table.PUBLISHED):
        pytest.skip(f"esp-dl zoo files not cached under {zoo} (bench/latency_fit.py --esp-dl-git)")
    for target, table in latency_table.COEFFICIENTS.items():
        recs = [r for r in latency_table.PUBLISHED if r.target == target]
        a = np.array([fit_mod.features(zoo / r.path) for r in recs])
        floor = np.array([latency_table.FLOORS.get(target, {}).get(g, 0.0) for g in latency_table.GROUPS])
        refit = fit_mod.fit(a, np.array([r.ms for r in recs]), floor)
        assert refit == pytest.approx([table[g] for g in latency_table.GROUPS], rel=1e-5, abs=1e-12)


def _bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "latency_fit.py"
    spec = importlib.util.spec_from_file_location("latency_fit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_estimate_memory_and_latency(shared):
    path = shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl")
    m = espdl.read(path)
    est = estimate(m)  # no metadata target: inferred from the per-channel weights -> esp32p4
    assert est.target == "esp32p4" and est.ms == pytest.approx(216.7, abs=0.1)
    assert est.param_bytes == sum(len(t.raw) for t in m.graph.initializers.values()) == 3_542_004
    from espq.espdl.inspect import activation_memory  # the same planner as espq inspect

    assert est.peak_activation_bytes == activation_memory(m)["activation_peak_bytes"] > 112 * 112 * 96
    assert est.peak_memory_bytes == est.param_bytes + est.peak_activation_bytes
    assert (
        estimate_file(path).ms == est.ms and estimate_file(path.read_bytes(), "esp32s3").target == "esp32s3"
    )
    assert estimate(m, "esp32s3").ms > 2 * est.ms  # S3 is slower on every published model
    with pytest.raises(ConfigError, match="espq.espdl.cost.estimate"):
        estimate(str(path))  # this layer does not read files


def test_twice_the_work_predicts_more(shared):
    """The same model on inputs twice as tall (twice the MACs and bytes) predicts about twice the ms."""
    m = espdl.read(shared("espdl-zoo", "human_face_detect_msr_s8_v1_p4.espdl"))
    base = estimate(m, "esp32p4")
    doubled = copy.deepcopy(m)
    g = doubled.graph
    for v in (*g.inputs, *g.value_info, *g.outputs):  # every activation twice as tall: twice the MACs
        if v.shape and len(v.shape) == 4:
            v.shape = [v.shape[0], 2 * v.shape[1], *v.shape[2:]]
    est = estimate(doubled, "esp32p4")
    assert est.macs == 2 * base.macs
    assert 1.6 * base.ms < est.ms <= 2 * base.ms + 1e-9
    assert est.param_bytes == base.param_bytes and est.peak_activation_bytes > base.peak_activation_bytes


def test_inspect_prints_latency_and_peak_memory(shared, capsys):
    from espq.espdl.inspect import inspect_cli, inspect_model

    path = shared("espdl-zoo", "coco_detect_yolo11n_320_s8_v1_p4.espdl")
    d = inspect_model(path)
    assert d["latency_target"] == "esp32p4" and d["latency_ms"] == pytest.approx(528.4, abs=0.1)
    assert d["peak_memory_bytes"] == d["param_bytes"] + d["activation_peak_bytes"]
    assert d["param_bytes"] == sum(len(t.raw) for t in espdl.read(path).graph.initializers.values())
    assert inspect_cli(path) == 0
    out = capsys.readouterr().out
    assert f"latency:     {d['latency_ms']:.1f} ms predicted on esp32p4" in out
    assert f"peak memory: {d['peak_memory_bytes']:,} B" in out
    c_model = shared("espdl-zoo", "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl")
    assert inspect_cli(c_model, as_json=True) == 0
    assert '"latency_ms": null' in capsys.readouterr().out
