"""Issue 13 finding 7: ``IntegerRunner.run(outputs=[an intermediate])`` returns the tensor in the same
(ONNX) layout and values as ``qm.run`` for that tensor, float intermediates included (Softmax output
between two Convs stays float32 on the chip), on every target family."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.sim.integer import IntegerRunner


class SoftmaxBetweenConvs(nn.Module):
    """Conv → Softmax (float32 output) → Conv → Reshape → Transpose: 4-D NCHW, float and 3-D tensors."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 5, 3, padding=1)

    def forward(self, x):
        y = self.c2(torch.softmax(self.c1(x), dim=1))
        return y.reshape(1, 5, 42).transpose(1, 2)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("target", ["esp32p4", "esp32s3", "c"])
def test_intermediates_have_the_fakequant_layout(tmp_path, target):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((1, 3, 6, 7)).astype(np.float32) for _ in range(2)]
    qm = espq.quantize(
        SoftmaxBetweenConvs().eval(), data, target=target, bits=8, input_shape=[1, 3, 6, 7], progress=False
    )
    path = tmp_path / "m.espdl"
    qm.export(path)
    runner = IntegerRunner(path)
    softmax = next(n for n in qm.graph.nodes if n.op_type == "Softmax").outputs[0]
    names = [n.outputs[0] for n in qm.graph.nodes]
    expected_shapes = [(1, 4, 6, 7), (1, 4, 6, 7), (1, 5, 6, 7), (1, 5, 42), (1, 42, 5)]
    assert [tuple(qm.run(data[0], outputs=[t])[t].shape) for t in names] == expected_shapes
    for t in names:
        fq = qm.run(data[0], outputs=[t])[t]
        chip = runner.run(data[0], outputs=[t])[t]
        assert chip.shape == fq.shape, t
        np.testing.assert_allclose(chip, fq, rtol=0, atol=1e-6, err_msg=t)
    soft = runner.run(data[0], outputs=[softmax])[softmax]
    # a float tensor: channel sums are 1 (NCHW axis 1), which a channel-last result would not give
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert len(np.unique(soft)) > 100  # not rounded to an 8-bit grid
