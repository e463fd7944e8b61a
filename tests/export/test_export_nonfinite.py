"""Export never embeds NaN/Inf test values (issue 13 finding 4): it raises naming the tensor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import espq
from espq.errors import ValidationError


class _ZeroOverZero(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x - 1.0) / torch.relu(x)


def test_nan_test_value_raises_naming_tensor(tmp_path):
    rng = np.random.default_rng(0)
    calib = [np.abs(rng.standard_normal((2, 4, 8))).astype(np.float32) + 0.5]
    qm = espq.quantize(_ZeroOverZero().eval(), calib, target="esp32p4", input_shape=[1, 4, 8], progress=False)
    x = np.zeros((1, 4, 8), np.float32)
    x[0, 0, :4] = 1.0  # 4 elements 0/1 = 0, the other 28 are 0/0
    nan = int(np.isnan(next(iter(qm.run(x).values()))).sum())
    assert nan == 28
    out = tmp_path / "m.espdl"
    with pytest.raises(
        ValidationError, match=rf"tensor '.+' \(output of node '/Div' \(Div\)\) has {nan} NaN and 0 Inf of 32"
    ):
        qm.export(out, test_inputs=x)
    assert not out.exists()
    x[:] = 2.0
    qm.export(out, test_inputs=x)  # finite values export fine
    assert out.exists()
