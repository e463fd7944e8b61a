"""graphwise / layerwise / isolated on a 3-layer graph against values computed by hand with numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ahelpers import make_model
from onnx import helper

import espq
from espq.analysis import analyse
from espq.analysis.report import format_table

RNG = np.random.default_rng(0)


def dyadic(shape, scale, step):
    """Values on a 2^-k grid: every product and sum below is exact in float32, so the simulator and the
    numpy computation agree bit for bit (no rounding tie can fall differently)."""
    return (np.round(RNG.normal(0, scale, shape) / step) * step).astype(np.float32)


W = {f"w{i}": dyadic((4, 4), 0.5, 1 / 8) for i in (1, 2, 3)}
CALIB = [dyadic((8, 4), 1.0, 1 / 8)]
DATA = [dyadic((n, 4), 1.0, 1 / 8) for n in (5, 3, 2)]  # ragged batches: the weighting matters


def toy_model():
    """x -> mm1 -> Relu (fused into mm1) -> mm2 -> mm3 -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="mm1"),
        helper.make_node("Relu", ["m1"], ["r1"], name="relu"),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="mm2"),
        helper.make_node("MatMul", ["m2", "w3"], ["y"], name="mm3"),
    ]
    return make_model(nodes, [("x", [1, 4])], [("y", [1, 4])], W)


@pytest.fixture(scope="module")
def qm():
    return espq.quantize(toy_model(), CALIB, target="esp32s3", progress=False)


@pytest.fixture(scope="module")
def report(qm):
    return analyse(qm, DATA, progress=False)


def q_act(x, e):  # esp32s3 activations: round half up, saturate to int8
    return (np.clip(np.floor(x / 2.0**e + 0.5), -128, 127) * 2.0**e).astype(np.float32)


def q_param(x, e):  # parameters: round half to even
    return np.clip(np.round(x / 2.0**e), -128, 127) * 2.0**e


def snr(q, f):
    q, f = q.astype(np.float64), f.astype(np.float64)
    per = ((q - f) ** 2).sum(axis=1) / ((f**2).sum(axis=1) + 1e-7)
    return per.mean()


def weighted(values_per_batch):
    n = np.array([len(b) for b in DATA], dtype=np.float64)
    return float(np.sum(np.array(values_per_batch) * n) / n.sum())


def hand_values(qm):
    e = {t: qm.plan.tensors[t].exponent for t in ("x", "r1", "m2", "y", "w1", "w2", "w3")}
    assert qm.plan.fused == {"mm1": "relu"}
    assert qm.plan.tensors["m1"].exponent == e["r1"]  # the fused pair shares the Relu's spec
    wq = {k: q_param(W[k], e[k]).astype(np.float32) for k in W}
    out = {k: {op: [] for op in ("mm1", "mm2", "mm3")} for k in ("graphwise", "layerwise", "isolated")}
    for x in DATA:
        f1 = x @ W["w1"]
        r = np.maximum(f1, 0)
        f2 = r @ W["w2"]
        y = f2 @ W["w3"]
        # fully quantized; mm1's output is measured before the Relu rounds it (OVERLAPPED in ESP-PPQ)
        a1 = q_act(x, e["x"]) @ wq["w1"]
        rq = q_act(np.maximum(a1, 0), e["r1"])
        a2 = q_act(rq @ wq["w2"], e["m2"])
        yq = q_act(a2 @ wq["w3"], e["y"])
        for op, q, f in (("mm1", a1, f1), ("mm2", a2, f2), ("mm3", yq, y)):
            out["graphwise"][op].append(snr(q, f))
        # isolated: float input rounded to the op's input spec, quantized weights, output rounded
        out["isolated"]["mm1"].append(snr(q_act(x, e["x"]) @ wq["w1"], f1))
        out["isolated"]["mm2"].append(snr(q_act(q_act(r, e["r1"]) @ wq["w2"], e["m2"]), f2))
        out["isolated"]["mm3"].append(snr(q_act(q_act(f2, e["m2"]) @ wq["w3"], e["y"]), y))
        # layerwise (ESP-PPQ): only that op's TQCs; inputs from a quantized producer are OVERLAPPED
        l1 = np.maximum(q_act(x, e["x"]) @ wq["w1"], 0) @ W["w2"] @ W["w3"]
        l2 = q_act(r @ wq["w2"], e["m2"]) @ W["w3"]
        l3 = q_act(f2 @ wq["w3"], e["y"])
        for op, q in (("mm1", l1), ("mm2", l2), ("mm3", l3)):
            out["layerwise"][op].append(snr(q, y))
    return {k: {op: weighted(v) for op, v in d.items()} for k, d in out.items()}


def test_values_equal_hand_computed(qm, report):
    hand = hand_values(qm)
    assert report.batches == 3 and report.samples == 10
    for kind in ("graphwise", "layerwise", "isolated"):
        got = getattr(report, kind)
        assert set(got) == {"mm1", "mm2", "mm3"}
        for op, v in hand[kind].items():
            assert got[op] == pytest.approx(v, rel=1e-5, abs=1e-9), (kind, op)
    # sanity: the numbers are not trivially zero and the first op has no upstream error
    assert hand["graphwise"]["mm3"] > 1e-5
    assert report.graphwise["mm1"] == pytest.approx(report.isolated["mm1"], rel=1e-12)


def test_other_metrics_are_kept(report):
    cos = report.values["graphwise"]["cosine"]
    mse = report.values["layerwise"]["mse"]
    assert all(-1.0 <= v <= 1.0 + 1e-9 for v in cos.values())
    assert cos["mm1"] > 0.99
    assert all(v > 0 for v in mse.values())


def test_terminal_table_format(report):
    text = format_table({"a": 0.25, "bb": 0.05, "c": 0.15})
    lines = text.splitlines()
    assert lines[0] == "Layer  | NOISE:SIGNAL POWER RATIO "
    assert lines[1] == "a:     | " + "█" * 20 + " | 25.000%"
    assert lines[2] == "c:     | " + "█" * 10 + " " * 10 + " | 15.000%"
    assert lines[3] == "bb:    | " + " " * 20 + " | 5.000%"
    full = report.format()
    assert full.index("GRAPH-WISE") < full.index("LAYER-WISE") < full.index("ISOLATED")
    assert "summary: graph output 'y' graphwise error" in full
    assert "layerwise offenders are" in full


def test_json_has_every_number(qm, report, tmp_path):
    p = tmp_path / "report.json"
    report.to_json(p)
    d = json.loads(p.read_text())
    assert d["format"] == "espq-analysis/1"
    ops = {o["name"]: o for o in d["ops"]}
    assert set(ops) == {"mm1", "mm2", "mm3"}
    assert ops["mm2"]["layerwise"]["snr"] == pytest.approx(report.layerwise["mm2"])
    assert ops["mm3"]["isolated"]["cosine"] == pytest.approx(report.values["isolated"]["cosine"]["mm3"])
    assert ops["mm1"]["fused_relu"] == "relu"
    assert ops["mm2"]["output_exponent"] == qm.plan.tensors["m2"].exponent
    assert ops["mm2"]["weight_exponent"] == qm.plan.tensors["w2"].exponent
    assert ops["mm2"]["input_exponents"] == {"r1": qm.plan.tensors["r1"].exponent}
    assert ops["mm2"]["bits"] == 8 and ops["mm2"]["quant_type"] == "S8"
    assert 0.0 <= ops["mm2"]["clip_ratio"] < 0.5
    assert d["histograms"] and all(len(h["counts"]) == 64 for h in d["histograms"])


def test_clip_ratio_counts_saturated_values(qm):
    from espq.analysis import clip_ratio
    from espq.quant.observers import TensorStats

    st = TensorStats(bins=16)
    st.update_array(np.array([0.5, 1.5, 2.5, 3.5]))  # range 4, bins of 0.25
    assert clip_ratio(st, 2.0) == pytest.approx(0.5)
    assert clip_ratio(st, 8.0) == 0.0
    assert clip_ratio(None, 1.0) is None


def test_subset_of_kinds_and_metric(qm):
    r = analyse(qm, DATA, kinds=("isolated",), metric="mse", progress=False)
    assert r.isolated and not r.graphwise and not r.layerwise
    assert "ISOLATED" in r.format() and "GRAPH-WISE" not in r.format()
    assert "MSE LOSS(UNSCALED)" in r.format()


def test_steps_limit_batches(qm):
    r = analyse(qm, DATA, steps=1, progress=False)  # ESP-PPQ: steps + 1 batches
    assert r.batches == 2 and r.samples == 8


def test_one_shot_iterator(qm, report):
    r = analyse(qm, iter(DATA), progress=False)
    assert r.batches == 3
    assert r.layerwise["mm2"] == pytest.approx(report.layerwise["mm2"])


def test_empty_data_gives_empty_report(qm):
    for data in ([], iter([])):
        with pytest.warns(UserWarning, match="empty"):
            r = analyse(qm, data, progress=False)
        assert r.empty and r.batches == 0
        assert "empty" in r.format() and "empty" in r.summary()


def test_model_without_computing_op():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    qm = espq.quantize(make_model(nodes, [("x", [1, 4])], [("y", [1, 4])]), CALIB, progress=False)
    with pytest.warns(UserWarning, match="no quantized computing op"):
        r = analyse(qm, DATA, progress=False)
    assert r.empty and not r.ops
    assert "no quantized computing op" in r.format()
    d = r.to_dict()
    assert d["ops"] == [] and d["notes"]


def test_bad_arguments(qm):
    from espq.errors import ConfigError

    with pytest.raises(ConfigError, match="kind"):
        analyse(qm, DATA, kinds=("layer",), progress=False)
    with pytest.raises(ConfigError, match="metric"):
        analyse(qm, DATA, metric="psnr", progress=False)
    with pytest.raises(ConfigError, match="steps"):
        analyse(qm, DATA, steps=-1, progress=False)


def test_nan_in_table_is_last():
    lines = format_table({"a": math.nan, "b": 0.1}).splitlines()
    assert lines[1].startswith("b:") and lines[2].startswith("a:")
