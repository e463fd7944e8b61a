"""The quality gate's findings in ``espq check --calib`` and ``espq analyse`` (text, JSON, HTML)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches
from typer.testing import CliRunner

import espq
from espq.cli import app
from espq.quant.quality import QualityWarning

runner = CliRunner()


def dead_channel_model():
    """A 1x1 Conv whose output channel 1 has weights 1/400 of channel 0's: one per-tensor exponent rounds
    channel 1 to zero at int8 (the graph output's last channel dies)."""
    w = np.zeros((2, 2, 1, 1), np.float32)
    w[0, :, 0, 0] = [20.0, -20.0]
    w[1, :, 0, 0] = [0.05, 0.02]
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    return make_model(nodes, [("x", [1, 2, 4, 4])], [("y", [1, 2, 4, 4])], {"w": w})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gate")
    bad, good = d / "dead.onnx", d / "good.onnx"
    bad.write_bytes(dead_channel_model().SerializeToString())
    good.write_bytes(conv_relu_add_model().SerializeToString())
    rng = np.random.default_rng(0)
    np.save(d / "bad.npy", rng.standard_normal((8, 2, 4, 4)).astype(np.float32))
    np.save(d / "good.npy", rng.standard_normal((8, 3, 8, 8)).astype(np.float32))
    return d, bad, good


def test_check_calib_prints_one_line_per_finding_and_exits_1(files):
    d, bad, good = files
    r = runner.invoke(app, ["check", str(bad), "--calib", str(d / "bad.npy"), "--batch-size", "4"])
    assert r.exit_code == 1, r.output
    line = next(x for x in r.output.splitlines() if "dead_channels" in x)
    assert line.strip().startswith("dead_channels: 'y' (op 'conv'): 1 of 2 channel(s) lost their signal")
    assert "fix: int16 for op 'conv' (setting.precision={'conv': 16})" in line
    r = runner.invoke(app, ["check", str(bad), "--calib", str(d / "bad.npy"), "--batch-size", "4", "--json"])
    assert r.exit_code == 1
    quality = json.loads(r.output)["quality"]
    assert quality["findings"][0]["kind"] == "dead_channels"  # (KL may also clip the output's tails)
    assert quality["findings"][0]["fix_args"] == {"precision": {"conv": 16}}
    assert len(quality["lines"]) == len(quality["findings"])
    r = runner.invoke(app, ["check", str(good), "--calib", str(d / "good.npy"), "--batch-size", "4"])
    assert r.exit_code == 0, r.output
    assert "quality gate: no damaged output, channel or op found (4 sample(s))" in r.output
    r = runner.invoke(app, ["check", str(good)])  # without --calib: the capability check only
    assert r.exit_code == 0 and "quality gate" not in r.output


def test_analyse_reports_the_gate_in_text_json_and_html(files, tmp_path):
    d, bad, _ = files
    html, js = tmp_path / "r.html", tmp_path / "r.json"
    args = ["analyse", str(bad), "--calib", str(d / "bad.npy"), "--batch-size", "4", "--steps", "1"]
    r = runner.invoke(app, [*args, "--html", str(html), "--json", str(js)])
    assert r.exit_code == 0, r.output
    report = json.loads(js.read_text())
    n = len(report["quality"]["findings"])
    assert f"quality gate: {n} finding(s) on 4 sample(s)" in r.output
    assert "  dead_channels: 'y' (op 'conv'): 1 of 2 channel(s)" in r.output
    finding = report["quality"]["findings"][0]
    assert (finding["tensor"], finding["op"], finding["kind"]) == ("y", "conv", "dead_channels")
    assert report["quality"]["lines"][0].startswith("dead_channels: 'y' (op 'conv')")
    text = html.read_text()
    assert '<h2 id="quality">Quality gate</h2>' in text and "dead_channels: &#x27;y&#x27;" in text


def test_dead_channel_measured_and_int16_fix_revives_it():
    data = random_batches([1, 2, 4, 4])
    with pytest.warns(QualityWarning, match="dead_channels"):
        qm = espq.quantize(dead_channel_model(), data, progress=False)
    x = data[0]
    assert np.all(qm.run(x)["y"][:, 1] == 0) and np.ptp(qm.run_float(x)["y"][:, 1]) > 0
    fixed = espq.quantize(dead_channel_model(), data, progress=False, on_damage="fix")
    assert fixed.plan.node_types["conv"].endswith("16") and fixed.quality.ok
    assert np.unique(fixed.run(x)["y"][:, 1]).size > 10
    assert qm.analyse(data, steps=1, progress=False).quality["lines"][0].startswith("dead_channels")
    planned = espq.quantize(dead_channel_model(), None, plan=qm.plan, progress=False)
    assert planned.analyse(data, steps=1, progress=False).quality is None  # a re-applied plan: unchecked
