"""ESP-DL's quantize_sin_model/ tutorial (sin_model.py, then quantize_torch_model.py and
quantize_onnx_model.py in the same folder), its API calls made the same way on a small MLP, written anew.

The order matters: sin_model.py exports sin_model.onnx itself, then quantize_torch_model.py writes
sin_model.espdl, whose ``<stem>.onnx`` by-product is that same path. espq keeps the user's file (with a
warning) instead of stopping; quantize_onnx_model.py then quantizes it. Measured with the patched scripts
(esp_ppq -> espq, 3 training epochs): both exit 0, run --check PASS 1/1, sin_model.onnx md5 unchanged.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from espq.api import espdl_quantize_onnx, espdl_quantize_torch
from espq.cli import app
from espq.executor.torch import TorchExecutor


class SinPredictor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(1, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_sin_scripts_in_one_folder(tmp_path):
    torch.manual_seed(0)
    x = torch.linspace(0, 2 * np.pi, 256).unsqueeze(1)
    y = torch.sin(x)
    model = SinPredictor()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    model.eval()
    onnx_path = tmp_path / "sin_model.onnx"  # sin_model.py's own export
    torch.onnx.export(
        model, torch.randn(1, 1), str(onnx_path), opset_version=12, input_names=["input"],
        output_names=["output"], dynamo=False,
    )  # fmt: skip
    before = _md5(onnx_path)
    dataloader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)

    def collate_fn(batch):
        return batch[0].to("cpu")

    common = dict(
        calib_dataloader=dataloader, calib_steps=32, input_shape=[1, 1], inputs=None, target="esp32s3",
        num_of_bits=8, collate_fn=collate_fn, dispatching_override=None, device="cpu", error_report=True,
        skip_export=False, export_test_values=True, verbose=1,
    )  # fmt: skip
    espdl = tmp_path / "sin_model.espdl"
    with pytest.warns(UserWarning, match="kept '.*sin_model.onnx'"):
        graph = espdl_quantize_torch(model=model, espdl_export_file=str(espdl), **common)
    assert _md5(onnx_path) == before
    # quantize_torch_model.py's evaluation: TorchExecutor on the returned graph, MSE near the float one
    executor = TorchExecutor(graph=graph, device="cpu")
    criterion = torch.nn.MSELoss()
    float_loss = quant_loss = 0.0
    for batch_x, batch_y in dataloader:
        with torch.no_grad():
            float_loss += criterion(model(batch_x), batch_y).item()
        quant_loss += criterion(executor(batch_x)[0], batch_y).item()
    float_loss, quant_loss = float_loss / len(dataloader), quant_loss / len(dataloader)
    assert float_loss < 0.02 and abs(quant_loss - float_loss) < 0.01, (float_loss, quant_loss)
    runner = CliRunner()
    r = runner.invoke(app, ["run", str(espdl), "--check"])
    assert r.exit_code == 0 and "PASS: 1/1" in r.output, r.output
    torch_bytes = espdl.read_bytes()
    # quantize_onnx_model.py on the same folder: reads the user's ONNX, rewrites sin_model.espdl
    espdl_quantize_onnx(onnx_import_file=str(onnx_path), espdl_export_file=str(espdl), **common)
    assert _md5(onnx_path) == before
    r = runner.invoke(app, ["run", str(espdl), "--check"])
    assert r.exit_code == 0 and "output" in r.output and "PASS: 1/1" in r.output, r.output
    assert espdl.read_bytes() != torch_bytes  # the ONNX run really wrote its own file (names differ)
