"""Issue 13 finding 2: GRU/LSTM fake-quant == integer runner on the exported file == embedded test
values, on every target family at int8 and int16.

Before, fake-quant ran the float op and rounded its outputs while the chip keeps its gates in int16
with table sigmoid/tanh (79 of 80 codes of ``Y`` differed on the first case below, esp32s3 int8), the
file had no ``gate_exponent`` (the module's default −8 doubled the 2^−9 biases) and an int8 ``Y_c``
(the module asserts int16 at the gate exponent)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.espdl import read
from espq.sim.integer import IntegerRunner, check_test_values

TARGETS = ("esp32p4", "esp32s3", "c")


class Rnn(nn.Module):
    """``nn.LSTM`` / ``nn.GRU`` returning (Y, Y_h[, Y_c]); ``state``: a constant non-zero initial state
    (ESP-DL reads ``initial_c`` as a parameter; espq's capability check requires a constant)."""

    def __init__(self, kind: str, size: int, hidden: int, bidirectional: bool = False, state: bool = False):
        super().__init__()
        self.kind, self.state = kind, state
        self.rnn = getattr(nn, kind)(size, hidden, bidirectional=bidirectional)
        dirs = 2 if bidirectional else 1
        gen = torch.Generator().manual_seed(1)
        # a hidden state is a previous Y_h: inside Y's range (ESP-DL copies it raw at Y_h's exponent)
        self.register_buffer("h0", 0.3 * torch.tanh(torch.randn(dirs, 1, hidden, generator=gen)))
        self.register_buffer("c0", 0.5 * torch.randn(dirs, 1, hidden, generator=gen))

    def forward(self, x):
        if not self.state:
            y, s = self.rnn(x)
        elif self.kind == "LSTM":
            y, s = self.rnn(x, (self.h0, self.c0))
        else:
            y, s = self.rnn(x, self.h0)
        return (y, *s) if isinstance(s, tuple) else (y, s)


CASES = {
    # kind, input size, hidden, seq, bidirectional, state input
    "lstm_i8_h16_t5": ("LSTM", 8, 16, 5, False, False),  # W rows 8 (C path at int8), R rows 16 (PIE)
    "lstm_i12_h24_t7_state": ("LSTM", 12, 24, 7, False, True),  # C-path rows, constant h0/c0
    "lstm_i16_h32_t4_bidir": ("LSTM", 16, 32, 4, True, False),
    "gru_i8_h16_t6": ("GRU", 8, 16, 6, False, False),
    "gru_i10_h20_t5_state": ("GRU", 10, 20, 5, False, True),
    "gru_i16_h16_t4_bidir": ("GRU", 16, 16, 4, True, False),
}


def _feed(case: str, rng: np.random.Generator) -> np.ndarray:
    _, size, _, seq, _, _ = CASES[case]
    return rng.standard_normal((seq, 1, size)).astype(np.float32)


def _quantize(case: str, target: str, bits: int):
    kind, size, hidden, seq, bidir, state = CASES[case]
    torch.manual_seed(0)
    net = Rnn(kind, size, hidden, bidir, state).eval()
    rng = np.random.default_rng(0)
    calib = [_feed(case, rng) for _ in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(net, calib, target=target, bits=bits, input_shape=[seq, 1, size], progress=False)
    return qm, net, rng


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_rnn_fakequant_equals_runner_and_test_values(tmp_path: Path, case, target, bits):
    qm, net, rng = _quantize(case, target, bits)
    path = tmp_path / "m.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    node = next(n for n in read(path).graph.nodes if n.op_type in ("LSTM", "GRU"))
    assert node.attributes["gate_exponent"] == -9
    assert check_test_values(path).ok
    runner = IntegerRunner(path)
    names = list(qm.graph.outputs)
    diffs = 0
    for _ in range(3):
        x = _feed(case, rng)
        ours, chip = qm.run(x), runner.run(x)
        for name in names:
            e = qm.plan.tensors[name].exponent
            a, b = np.rint(ours[name] * 2.0**-e), np.rint(chip[name] * 2.0**-e)
            assert a.shape == b.shape, name
            diffs += int((a != b).sum())
            assert np.abs(a - b).max() == 0, (name, int((a != b).sum()), a.size)
    assert diffs == 0
    # and the chip arithmetic is still an LSTM/GRU: Y close to the float module's on average (a few
    # elements may saturate: 4 calibration samples)
    x = _feed(case, rng)
    with torch.no_grad():
        ref = net(torch.from_numpy(x))[0].numpy()
    y = runner.run(x)[names[0]]
    assert np.abs(y.reshape(ref.shape) - ref).mean() < (0.03 if bits == 8 else 0.003)
