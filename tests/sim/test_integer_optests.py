"""Espressif op tests (``../shared/espdl-optests``): the integer runner must reproduce the chip's embedded
outputs (ESP-DL's rule: int8 exact, int16 ±1, float 2e-5; esp_dl_facts.md §2.6, §6).

A fixed subset keeps the run short (the first 2 cases per target/bits/op for arithmetic, pooling and data
movement, 3 for activations, comparisons, reductions and norms); ``bench/optests.py`` runs every file.
"""

from __future__ import annotations

import pytest
from espdl_builders import OPTESTS, optest_cases

from espq.sim.integer import check_test_values

ARITH_MOVE_OPS = [
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Mod",
    "AveragePool",
    "GlobalAveragePool",
    "MaxPool",
    "Requantize",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Pad",
    "Split",
    "Gather",
    "Concat",
    "SpaceToDepth",
    "DepthToSpace",
    "ReverseSequence",
]

ACT_REDUCE_NORM_OPS = [
    # activations (int8 via LUT, int16 / float via the float path)
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish", "Elu",
    "Exp", "Log", "Sqrt", "Neg",
    "Softmax", "LogSoftmax", "Resize",
    "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual",
    "ReduceL1", "ReduceL2", "ReduceMin", "ReduceMax", "ReduceSum", "ReduceProd", "ReduceMean",
    "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp",
    "LayerNormalization", "LpNormalization", "RMSNormalization", "ScatterND",
]  # fmt: skip

CASES = optest_cases(ARITH_MOVE_OPS, per_group=2) + optest_cases(ACT_REDUCE_NORM_OPS, per_group=3)


@pytest.mark.parametrize(
    "path", CASES, ids=[f"{p.parent.parent.name}/{p.parent.name}/{p.stem}" for p in CASES]
)
def test_optest_case(path):
    rep = check_test_values(path)
    assert rep.ok, rep.format()


def test_subset_covers_every_target_and_width():
    if not CASES:
        pytest.skip("op tests not present")
    groups = {p.parent.parent.name for p in CASES}
    assert {"c_s8", "c_s16", "esp32p4_s8", "esp32p4_s16", "esp32s3_s8", "esp32s3_s16"} <= groups


@pytest.mark.skipif(not OPTESTS.is_dir(), reason="../shared/espdl-optests not present")
def test_subset_covers_every_op():
    ops = {p.parent.name for p in CASES}
    # no Clip case in the stored suite
    assert ops == set(ARITH_MOVE_OPS) | set(ACT_REDUCE_NORM_OPS) - {"Clip"}
