"""Quality gate (espq.quant.quality): dead channels, mixed-range Concat outputs, clipping, on_damage."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches

import espq
from espq.errors import ConfigError
from espq.espdl import read
from espq.ir.passes.split_mixed_outputs import SPLIT_KEY, split_concat_outputs
from espq.quant.quality import QualityError, QualityWarning, check_clipping, gate_feeds


def mixed_concat_model():
    """x -> Mul(300) (box-like, ±~1000) and x -> Sigmoid (score-like, 0..1), concatenated as the output."""
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["boxes"], name="mul"),
        helper.make_node("Sigmoid", ["x"], ["scores"], name="sig"),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], name="cat", axis=1),
    ]
    k = np.full((1, 2, 1, 1), 300.0, np.float32)
    return make_model(nodes, [("x", [1, 2, 4, 4])], [("y", [1, 4, 4, 4])], {"k": k})


def test_clean_model_has_no_findings():
    qm = espq.quantize(conv_relu_add_model(), random_batches([1, 3, 8, 8]), progress=False)
    assert qm.quality.ok and qm.quality.samples == 4
    assert qm.quality.to_dict() == {"samples": 4, "findings": [], "lines": [], "applied": []}


def test_mixed_range_concat_output_warns_with_op_and_fix():
    with pytest.warns(QualityWarning, match="mixed_range"):
        qm = espq.quantize(
            mixed_concat_model(), random_batches([1, 2, 4, 4]), progress=False, split_mixed_outputs=False
        )
    kinds = {f.kind: f for f in qm.quality.findings}
    mixed = kinds["mixed_range"]
    assert (mixed.tensor, mixed.op) == ("y", "cat")
    ratio = float(mixed.damage.split("differ in range by ")[1].split("x")[0])
    assert ratio >= 16
    assert "split the output per head" in mixed.fix and "int16 for op 'cat'" in mixed.fix
    dead = kinds["dead_channels"]
    assert dead.damage.startswith("2 of 4 channel(s)") and "channels 2, 3" in dead.damage
    assert "2 with all codes equal" in dead.damage
    # the score channels really collapsed: every quantized score is the same code
    q = qm.run(random_batches([1, 2, 4, 4], n=1, seed=5)[0])["y"]
    assert np.unique(q[:, 2:]).size == 1
    assert "dead_channels: 'y' (op 'cat')" in qm.quality.summary()


def test_on_damage_error_raises():
    with pytest.raises(QualityError, match="mixed_range: 'y' \\(op 'cat'\\)"):
        espq.quantize(
            mixed_concat_model(),
            random_batches([1, 2, 4, 4]),
            progress=False,
            on_damage="error",
            split_mixed_outputs=False,
        )
    with pytest.raises(ConfigError, match="on_damage"):
        espq.quantize(mixed_concat_model(), random_batches([1, 2, 4, 4]), progress=False, on_damage="x")


def test_on_damage_fix_splits_the_mixed_output_and_the_scores_come_alive(tmp_path):
    data = random_batches([1, 2, 4, 4])
    qm = espq.quantize(mixed_concat_model(), data, progress=False, on_damage="fix", split_mixed_outputs=False)
    assert qm.graph.outputs == ["boxes", "scores"]
    assert json.loads(qm.graph.metadata[SPLIT_KEY]) == {"y": {"parts": ["boxes", "scores"], "axis": 1}}
    assert qm.quality.ok and qm.quality.applied[0].startswith("mixed_range: 'y' (op 'cat')")
    x = random_batches([1, 2, 4, 4], n=1, seed=5)[0]
    q, f = qm.run(x)["scores"], qm.run_float(x)["scores"]
    assert np.unique(q).size > 20  # int8 with one shared exponent: one code for every score
    step = 2.0 ** qm.plan.tensors["scores"].exponent
    assert step == 2.0**-7 and np.max(np.abs(q - f)) <= step  # (the int8 input's rounding adds to it)
    qm.export(tmp_path / "m.espdl")  # the exported file has both parts as outputs, bit-exact with fake-quant
    chip = espq.run_espdl(tmp_path / "m.espdl", x[:1], target="esp32p4")
    assert sorted(chip) == ["boxes", "scores", "y"]  # the parts, and 'y' re-joined from them
    np.testing.assert_array_equal(chip["scores"], q[:1])
    np.testing.assert_array_equal(chip["boxes"], qm.run(x[:1])["boxes"])


def test_clipping_that_destroys_the_signal_is_flagged():
    qm = espq.quantize(conv_relu_add_model(), random_batches([1, 3, 8, 8]), progress=False)
    assert check_clipping(qm) == []
    spec = qm.plan.tensors["r1"]
    qm.plan.tensors["r1"] = spec.with_exponent(spec.exponent - 6)  # clip at 1/64 of the calibrated limit
    (finding,) = [f for f in check_clipping(qm) if f.tensor == "r1"]
    lost = int(finding.damage.split("; ")[1].split("%")[0])
    assert lost > 90 and finding.op in ("relu1", "conv1")
    assert finding.fix_args == {"layer_calib_algorithm": {"r1": "minmax"}}


def test_split_concat_outputs_pass():
    graph = espq.load(mixed_concat_model())
    assert split_concat_outputs(graph, ["y"]) == {"y": ["boxes", "scores"]}
    assert graph.outputs == ["boxes", "scores"] and not any(n.op_type == "Concat" for n in graph.nodes)
    with pytest.raises(ConfigError, match="'boxes': it is not a graph output made by a Concat"):
        split_concat_outputs(graph, ["boxes"])


def test_mixed_range_output_is_split_by_default_and_the_original_name_is_rejoined(tmp_path):
    data = random_batches([1, 2, 4, 4])
    qm = espq.quantize(mixed_concat_model(), data, progress=False)
    assert qm.graph.outputs == ["boxes", "scores"] and qm.quality.ok
    (line,) = qm.quality.applied
    assert line.startswith("split_output: 'y' (op 'cat'): parts differ in range by ")
    assert "exported as outputs ['boxes', 'scores']" in qm.quality.summary()
    x = random_batches([1, 2, 4, 4], n=1, seed=5)[0]
    res, fl = qm.run(x), qm.run_float(x)
    assert sorted(res) == sorted(fl) == ["boxes", "scores", "y"]
    np.testing.assert_array_equal(res["y"], np.concatenate([res["boxes"], res["scores"]], axis=1))
    assert np.max(np.abs(res["y"][:, 2:] - fl["y"][:, 2:])) <= 2.0**-7  # the scores survive in 'y'
    assert list(qm.run(x, outputs=["y"])) == ["y"]
    np.testing.assert_array_equal(qm.run(x, outputs=["y"])["y"], res["y"])
    qm.export(tmp_path / "m.espdl")
    chip = espq.run_espdl(tmp_path / "m.espdl", x[:1], target="esp32p4")
    np.testing.assert_array_equal(chip["y"], res["y"][:1])
    codes = np.zeros(x[:1].shape, np.int8)
    raw = espq.run_espdl(tmp_path / "m.espdl", codes, target="esp32p4", raw=True)
    assert sorted(raw) == ["boxes", "scores"]  # codes with different exponents are not joined
    meta = read(tmp_path / "m.espdl").metadata_props
    assert json.loads(meta[SPLIT_KEY]) == {"y": {"parts": ["boxes", "scores"], "axis": 1}}
    # a plan saved from the split model re-applies with the same split
    qm.save_plan(tmp_path / "plan.json")
    again = espq.quantize(mixed_concat_model(), None, plan=tmp_path / "plan.json", progress=False)
    assert again.graph.outputs == ["boxes", "scores"]
    np.testing.assert_array_equal(again.run(x)["y"], res["y"])


def test_split_can_be_switched_off_and_similar_ranges_are_not_split():
    qm = espq.quantize(conv_relu_add_model(), random_batches([1, 3, 8, 8]), progress=False)
    assert qm.quality.applied == []
    with pytest.warns(QualityWarning, match="mixed_range"):
        qm = espq.quantize(
            mixed_concat_model(), random_batches([1, 2, 4, 4]), progress=False, split_mixed_outputs=False
        )
    assert qm.graph.outputs == ["y"] and SPLIT_KEY not in qm.graph.metadata


def test_gate_runs_each_kept_batch_as_calibrated():
    """A model whose batch size 1 is folded into a Reshape runs only with batch-1 feeds: the gate checks
    the last 4 batch-1 calibration batches one by one (a 4-sample batch would fail)."""
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),
        helper.make_node("Mul", ["r", "k"], ["y"], name="mul"),
    ]
    inits = {"shape": np.array([1, 8], np.int64), "k": np.full((1, 8), 2.0, np.float32)}
    model = make_model(nodes, [("x", [1, 2, 4])], [("y", [1, 8])], inits)
    data = random_batches([1, 2, 4], n=6, batch=1)
    qm = espq.quantize(model, data, progress=False)
    assert qm.quality.samples == 4 and qm.quality.ok
    picked = gate_feeds([{"x": b} for b in random_batches([1, 2, 4], n=3, batch=3)])
    assert [p["x"].shape[0] for p in picked] == [1, 3]
