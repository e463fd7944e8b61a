"""Espressif op tests (``../shared/espdl-optests``) for the part-A ops: the integer runner must reproduce
the chip's embedded outputs (ESP-DL's rule: int8 exact, int16 ±1, float 2e-5; esp_dl_facts.md §2.6, §6).

A fixed subset (the first 2 cases per target/bits/op) keeps the run short; ``bench/optests.py`` runs all.
"""

from __future__ import annotations

import pytest
from integer_a_helpers import optest_cases

from espq.sim.integer import check_test_values

OPS = [
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

CASES = optest_cases(OPS, per_group=2)


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
