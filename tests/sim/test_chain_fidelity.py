"""Fake-quant vs integer runner on the exported file, op by op (issue 13): the two must give the same
codes for random inputs (int8 exactly; int16 exactly too for these ops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.sim.integer import IntegerRunner

TARGETS = ("esp32p4", "esp32s3", "c")


def _codes(qm, x: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(fake-quant codes, runner codes, output exponent) of the single output."""
    qm.export(path)
    name, fq = next(iter(qm.run(x).items()))
    got = next(iter(IntegerRunner(path).run(x).values()))
    e = int(qm.plan.tensors[name].exponent)
    return np.rint(fq * 2.0**-e).astype(np.int64), np.rint(got * 2.0**-e).astype(np.int64), e


class ConvPRelu(nn.Module):
    """Conv → PRelu (per-channel or scalar slope; the exporter keeps PRelu a separate node)."""

    def __init__(self, slopes: list[float]):
        super().__init__()
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.p = nn.PReLU(len(slopes))
        with torch.no_grad():
            self.p.weight.copy_(torch.tensor(slopes))

    def forward(self, x):
        return self.p(self.c(x))


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("slopes", [[0.25, 0.1, 0.3, 0.7], [0.3]], ids=["per_channel", "scalar"])
def test_conv_prelu_fakequant_equals_runner(tmp_path, target, bits, slopes):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((4, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    qm = espq.quantize(
        ConvPRelu(slopes).eval(), data, target=target, bits=bits, input_shape=[1, 3, 6, 6], progress=False
    )
    for i in range(3):
        x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
        fq, chip, _ = _codes(qm, x, tmp_path / f"m{i}.espdl")
        assert (fq < 0).sum() > 20  # the negative (slope) side is exercised
        np.testing.assert_array_equal(fq, chip)
