"""Issue 13 finding 10: the analysis summary reports the graph outputs' error (the worst output), not
the last measured op's. Two outputs: ``y_bad`` reads only input column 0, which is ~100x smaller in the
calibration data than in the analysis data, so ``y_bad`` saturates; ``y_good`` (the last node) reads
the other columns, whose range is the same in both."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ahelpers import make_model
from onnx import helper

import espq
from espq.analysis import analyse
from espq.quant.quality import QualityWarning

RNG = np.random.default_rng(1)


def two_output_model():
    w_bad = np.zeros((8, 8), np.float32)
    w_bad[0] = RNG.normal(0, 0.5, 8)
    w_good = RNG.normal(0, 0.5, (8, 8)).astype(np.float32)
    w_good[0] = 0.0
    nodes = [
        helper.make_node("MatMul", ["x", "w_bad"], ["y_bad"], name="mm_bad"),
        helper.make_node("MatMul", ["x", "w_good"], ["y_good"], name="mm_good"),
    ]
    return make_model(
        nodes, [("x", [1, 8])], [("y_bad", [1, 8]), ("y_good", [1, 8])], {"w_bad": w_bad, "w_good": w_good}
    )


@pytest.fixture(scope="module")
def report():
    calib = RNG.normal(0, 1, (16, 8)).astype(np.float32)
    calib[:, 0] *= 0.01
    with warnings.catch_warnings():  # the quality gate rightly flags y_bad
        warnings.simplefilter("ignore", QualityWarning)
        qm = espq.quantize(two_output_model(), [calib], target="esp32s3", progress=False)
    data = [RNG.normal(0, 1, (8, 8)).astype(np.float32) for _ in range(3)]
    return analyse(qm, data, progress=False, kinds=("graphwise",))


def test_every_output_is_measured(report):
    assert set(report.outputs) == {"y_bad", "y_good"}
    assert report.outputs["y_bad"]["snr"] > 0.3
    assert report.outputs["y_good"]["snr"] < 0.01
    # each output here is a measured op's output: the numbers are the same comparison
    assert report.outputs["y_good"]["snr"] == pytest.approx(report.graphwise["mm_good"], rel=1e-9)
    assert report.to_dict()["outputs"]["y_bad"]["snr"] == pytest.approx(report.outputs["y_bad"]["snr"])


def test_summary_reads_the_worst_output_not_the_last_node(report):
    assert report.ops[-1].name == "mm_good"  # the last measured op is the good one
    bad = report.outputs["y_bad"]["snr"]
    s = report.summary()
    assert s.startswith(f"graph output 'y_bad' (worst of 2) graphwise error {bad * 100:.3g} %"), s
    assert "expect a visible accuracy drop" in s
