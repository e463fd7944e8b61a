"""Fake-quant vs integer runner on the exported file, op by op (issue 13): the two must give the same
codes for random inputs (int8 exactly; int16 exactly too for these ops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.ir import quant_rules as rules
from espq.sim.integer import IntegerRunner
from espq.targets import EQUAL_EXPONENT_OPS

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


class GemmNegAdd(nn.Module):
    """Gemm → Neg → Add with a wider branch: the Add's exponent must not leak into Neg's output, since
    ESP-DL's Neg negates the raw integers without rescaling."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.fc2 = nn.Linear(16, 8)
        with torch.no_grad():
            self.fc2.weight.mul_(8)

    def forward(self, x):
        return -self.fc(x) + self.fc2(x)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("target", TARGETS)
def test_gemm_neg_keeps_the_input_exponent(tmp_path, target, bits):
    torch.manual_seed(0)
    net = GemmNegAdd().eval()
    rng = np.random.default_rng(1)
    data = [rng.standard_normal((8, 16)).astype(np.float32) for _ in range(2)]
    qm = espq.quantize(net, data, target=target, bits=bits, input_shape=[1, 16], progress=False)
    neg = next(n for n in qm.graph.nodes if n.op_type == "Neg")
    e_in = qm.plan.input_spec(neg.name, 0, neg.inputs[0]).exponent
    assert qm.plan.tensors[neg.outputs[0]].exponent == e_in
    for i in range(3):
        x = rng.standard_normal((1, 16)).astype(np.float32)
        fq, chip, e = _codes(qm, x, tmp_path / f"m{i}.espdl")
        np.testing.assert_array_equal(fq, chip)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        # near the float model (int8 noise < 0.75; before the fix 4-15 units off)
        np.testing.assert_allclose(chip * 2.0**e, ref, atol=0.75 if bits == 8 else 0.005)


def test_every_op_that_does_not_rescale_keeps_its_input_exponent_in_the_planner():
    """The op table's "does not rescale" fact (``exponent_rule=EQUAL``) is what the planner follows:
    each such op either shares input 0's spec (passive) or aligns its inputs to its output."""
    unplanned = EQUAL_EXPONENT_OPS - rules.PASSIVE_OPS - set(rules.ALIGN_TO_OUTPUT)
    assert not unplanned
    assert {"Neg", "PRelu"} <= rules.PASSIVE_OPS and "Neg" in EQUAL_EXPONENT_OPS
