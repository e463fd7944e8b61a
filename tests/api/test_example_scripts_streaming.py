"""ESP-DL's streaming tutorial script (examples/tutorial/how_to_deploy_streaming_model/
quantize_streaming_model/quantize_torch_model.py), its API calls made the same way on a small TCN, written
anew: two ``espdl_quantize_torch`` calls (offline, then ``auto_streaming`` with a 3-frame chunk and the
script's ``streaming_table``) into a folder that already holds ESP-PPQ's files, as the esp-dl checkout does.

Measured with the patched script itself (esp_ppq -> espq only): exit 0 in its own folder, both exports
``espq run --check`` PASS (the streaming one once export_test_values=True; the script asks for none, like
Espressif's own streaming_model.espdl, which has none either).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from espq.api import espdl_quantize_torch, insert_streaming_cache_on_var
from espq.cli import app
from espq.espdl import read
from espq.executor.torch import TorchExecutor


class CausalDSConv1d(nn.Module):
    """Left-padded depthwise conv + pointwise conv (the tutorial's CausalDSConv1d)."""

    def __init__(self, ch: int, k: int, dilation: int) -> None:
        super().__init__()
        self.pad = (k - 1) * dilation
        self.depthwise = nn.Conv1d(ch, ch, k, dilation=dilation, groups=ch)
        self.pointwise = nn.Conv1d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(nn.functional.pad(x, (self.pad, 0))))


class TCN(nn.Module):
    """The tutorial's TCN layout, small: nodes /prev_conv, /layer/..., /out_conv, /Slice, /linear."""

    def __init__(self, c_in: int = 6, c: int = 12, k: int = 3, dilation: int = 2, frames: int = 3) -> None:
        super().__init__()
        self.prev_conv = nn.Conv1d(c_in, c, 1)
        self.layer = nn.Sequential(
            CausalDSConv1d(c, k, 1), nn.SiLU(), CausalDSConv1d(c, k, dilation), nn.SiLU()
        )
        self.k, self.frames = k, frames
        self.out_conv = nn.Conv1d(c, c_in, 1)
        self.linear = nn.Linear(c_in * frames, c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prev_conv(x)
        x = x + self.layer(x)
        x = nn.functional.avg_pool1d(nn.functional.pad(x, (self.k - 1, 0)), self.k, stride=1)
        x = self.out_conv(x)[:, :, -self.frames :]
        return self.linear(torch.flatten(x, 1))


INPUT_SHAPE = [1, 6, 16]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory):
    """The script's two calls, into a folder holding ESP-PPQ's model.onnx / streaming_model.onnx."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("esp32p4")
    foreign = {}
    for stem in ("model", "streaming_model"):
        proto = onnx.helper.make_model(onnx.helper.make_graph([], "esp_ppq_export", [], []))
        (out / f"{stem}.onnx").write_bytes(proto.SerializeToString())
        foreign[stem] = (out / f"{stem}.onnx").read_bytes()
    model = TCN().eval()
    dataloader = DataLoader(TensorDataset(torch.randn(*INPUT_SHAPE)), batch_size=1, shuffle=False)
    common = dict(
        calib_dataloader=dataloader, calib_steps=32, input_shape=INPUT_SHAPE, inputs=None,
        target="esp32p4", num_of_bits=8, dispatching_override=None, device="cpu", error_report=True,
        skip_export=False, verbose=1,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="kept '.*model.onnx'"):
        offline = espdl_quantize_torch(
            model=model, espdl_export_file=str(out / "model.espdl"), export_test_values=True, **common
        )
    table = [
        insert_streaming_cache_on_var("/out_conv/Conv_output_0", model.frames - 1),
        insert_streaming_cache_on_var("PPQ_Variable_0", 1, "/Slice"),
    ]
    streaming = {}
    for tv, name in ((False, "streaming_model.espdl"), (True, "streaming_model_tv.espdl")):
        with pytest.warns(UserWarning):
            streaming[tv] = espdl_quantize_torch(
                model=model, espdl_export_file=str(out / name), export_test_values=tv, auto_streaming=True,
                streaming_input_shape=[1, 6, 3], streaming_table=table, **common,
            )  # fmt: skip
    return out, foreign, model, dataloader, offline, streaming


def test_script_flow_keeps_esp_ppq_files_and_writes_both_models(script_run):
    out, foreign, *_ = script_run
    for stem, blob in foreign.items():
        assert (out / f"{stem}.onnx").read_bytes() == blob  # ESP-PPQ's own export left as it was
    caches = [
        (n.name, int(n.attr("window_size")))
        for n in read(out / "streaming_model.espdl").graph.nodes
        if n.op_type == "StreamingCache"
    ]
    # dilation*(k-1)+1 in front of the two depthwise convs and the pool, the script's table entry (window
    # output_frame_size - 1 = 2) in front of the Slice
    assert sorted(w for _, w in caches) == [2, 3, 3, 5]
    assert [v.shape for v in read(out / "streaming_model.espdl").graph.inputs] == [[1, 3, 6]]  # NWC chunk


def test_both_exports_pass_run_check(script_run):
    out = script_run[0]
    runner = CliRunner()
    for name in ("model.espdl", "streaming_model_tv.espdl"):
        r = runner.invoke(app, ["run", str(out / name), "--check"])
        assert r.exit_code == 0 and "PASS: 1/1" in r.output, r.output
    # export_test_values=False (the script's streaming call): no values, like Espressif's streaming file
    r = runner.invoke(app, ["run", str(out / "streaming_model.espdl"), "--check"])
    assert r.exit_code == 2 and "has no test values" in r.output


def test_returned_graph_runs_in_torch_executor(script_run):
    _, _, model, dataloader, offline, _ = script_run
    executor = TorchExecutor(graph=offline, device="cpu")
    (x,) = next(iter(dataloader))
    y = executor(x)
    assert isinstance(y, list) and y[0].shape == (1, 6)
    with torch.no_grad():
        ref = model(x)
    assert float(torch.mean((y[0] - ref) ** 2) / torch.mean(ref**2)) < 0.05
    np.testing.assert_array_equal(y[0].numpy(), offline.run(x.numpy())[offline.graph.outputs[0]])
