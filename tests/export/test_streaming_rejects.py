"""Streaming export refuses ops whose chip behaviour chunk by chunk is not known (issue 17 item 1).

GRU/LSTM: ESP-DL's dl_module_gru.hpp / dl_module_lstm.hpp start every forward from initial_h/initial_c
or zeros (memset) and keep no state across calls, so a chunk cannot continue the last one; ConvTranspose:
ESP-DL's source shows nothing about it behind a StreamingCache, and espq lowers it to a Conv with future
padding (stride 1) or InsertZeros + Conv (stride > 1), both refused. Each error names the node.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.errors import UnsupportedOpError


class ConvGRU(nn.Module):
    """A 1x1 conv over [1, C, T], then a GRU/LSTM over the frames."""

    def __init__(self, cell: type[nn.Module]) -> None:
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 1)
        self.rnn = cell(4, 6, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.conv(x).transpose(1, 2))[0]


class Upsample(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose1d(4, 4, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


def _quantize(model: nn.Module, shape: list[int]) -> espq.QuantizedModel:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    return espq.quantize(model.eval(), data, target="esp32p4", bits=8, input_shape=shape, progress=False)


@pytest.mark.parametrize("cell, op", [(nn.GRU, "GRU"), (nn.LSTM, "LSTM")])
def test_recurrent_op_on_frames_is_refused_naming_it(tmp_path, cell, op):
    qm = _quantize(ConvGRU(cell), [1, 4, 8])
    name = next(n.name for n in qm.graph.nodes if n.op_type == op)
    qm.export(tmp_path / "offline.espdl")  # the offline export is fine
    with pytest.raises(UnsupportedOpError, match=rf"node '{name}' \({op}\) .*restarts its hidden state"):
        qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 2], auto_streaming=True)
    assert not (tmp_path / "st.espdl").exists()


@pytest.mark.parametrize(
    "stride, why",
    [
        (1, r"\(Conv\) pads 2 frame\(s\) on the future side"),  # lowered to Conv with pads k-1 each side
        (2, r"\(InsertZeros of a ConvTranspose\) upsamples the frame axis by 2"),
    ],
)
def test_conv_transpose_on_frames_is_refused_naming_it(tmp_path, stride, why):
    qm = _quantize(Upsample(stride), [1, 4, 8])
    assert any(n.name.startswith("/up/ConvTranspose") for n in qm.graph.nodes)
    with pytest.raises(UnsupportedOpError, match=rf"node '/up/ConvTranspose[^']*' {why}"):
        qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 2], auto_streaming=True)
    assert not (tmp_path / "st.espdl").exists()
