"""ESP-PPQ module paths Espressif's example scripts hit first, exercised with snippets equivalent to theirs
(esp-dl examples/tutorial/how_to_quantize_model/quantize_sin_model, quantize_mobilenetv2/datasets/
imagenet_util.py, quantize_yolo11n_seg, the espdl-quantize skill's run_iteration.py), written anew."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import onnx
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from espq import QuantizationSetting, QuantizationSettingFactory, run_espdl, run_float
from espq.api import (
    ENABLE_CUDA_KERNEL,
    espdl_quantize_torch,
    generate_test_value,
    get_target_platform,
    load_native_graph,
)
from espq.errors import ConfigError, ModelLoadError
from espq.executor import TorchExecutor as TorchExecutorFromPackage
from espq.executor.torch import TorchExecutor
from espq.IR import BaseGraph
from espq.ir.onnx_io import graph_from_onnx
from espq.parser import NativeExporter
from espq.quantization.analyse import graphwise_error_analyse, layerwise_error_analyse, statistical_analyse

ESP_PPQ_RECORD_KEYS = [
    "Op name",
    "Op type",
    "Is parameter",
    "Is input",
    "Is output",
    "Variable name",
    "Noise:Signal Power Ratio",
    "Noise Mean",
    "Noise Std",
    "Noise Skewness",
    "Noise Kurtosis",
    "Noise Hist",
    "Noise Max",
    "Noise Min",
    "Quantized Mean",
    "Quantized Std",
    "Quantized Skewness",
    "Quantized Kurtosis",
    "Quantized Hist",
    "Quantized Max",
    "Quantized Min",
    "Float Mean",
    "Float Std",
    "Float Skewness",
    "Float Kurtosis",
    "Float Hist",
    "Float Max",
    "Float Min",
]  # fmt: skip  (esp_ppq 1.3.12 quantization/analyse/graphwise.py, StatisticalErrorAnalyser.stat)


class SinPredictor(torch.nn.Module):
    """An MLP like the tutorial's sin model (1 -> 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(1, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture(scope="module")
def sin_run(tmp_path_factory):
    """The tutorial's flow: train, quantize with espdl_quantize_torch, keep the returned graph."""
    torch.manual_seed(0)
    x = torch.linspace(-math.pi, math.pi, 320).reshape(-1, 1)
    y = torch.sin(x)
    model = SinPredictor()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    model.eval()
    dataloader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)

    def collate_fn(batch):
        return batch[0]

    out = tmp_path_factory.mktemp("sin") / "sin_model.espdl"
    graph = espdl_quantize_torch(
        model=model, espdl_export_file=str(out), calib_dataloader=dataloader, calib_steps=32,
        input_shape=[1, 1], inputs=None, target="esp32s3", num_of_bits=8, collate_fn=collate_fn,
        dispatching_override=None, device="cpu", error_report=False, skip_export=False,
        export_test_values=True, verbose=1,
    )  # fmt: skip
    return model, dataloader, collate_fn, graph, out


def test_sin_tutorial_evaluation_with_torch_executor(sin_run):
    model, dataloader, _, graph, out = sin_run
    executor = TorchExecutor(graph=graph, device="cpu")
    criterion = torch.nn.MSELoss()
    float_loss = quant_loss = 0.0
    for batch_x, batch_y in dataloader:
        y_pred = executor(batch_x)
        assert isinstance(y_pred, list) and isinstance(y_pred[0], torch.Tensor) and y_pred[0].shape == (32, 1)
        np.testing.assert_array_equal(y_pred[0].numpy(), graph.run(batch_x.numpy())[graph.graph.outputs[0]])
        quant_loss += criterion(y_pred[0], batch_y).item()
        with torch.no_grad():
            float_loss += criterion(model(batch_x), batch_y).item()
    float_loss, quant_loss = float_loss / len(dataloader), quant_loss / len(dataloader)
    assert float_loss < 0.01 and quant_loss < 0.02 and abs(quant_loss - float_loss) < 0.01, (
        float_loss,
        quant_loss,
    )
    # the executor's fake-quant output is what the exported file computes on the chip (int8: exactly)
    x0 = dataloader.dataset.tensors[0][:1]
    chip = next(iter(run_espdl(out, x0.numpy(), target="esp32s3").values()))
    np.testing.assert_allclose(executor(x0)[0].numpy(), chip, rtol=0, atol=0)


def test_imagenet_util_style_helpers(sin_run):
    _, dataloader, _, graph, _ = sin_run
    assert isinstance(graph, BaseGraph) and TorchExecutorFromPackage is TorchExecutor

    def evaluate(model: BaseGraph, device: str = "cpu"):
        executor = TorchExecutor(graph=model, device=device)
        return lambda input_tensor: torch.tensor(executor(*[input_tensor])[0])

    batch = next(iter(dataloader))[0]
    with ENABLE_CUDA_KERNEL():
        pred = evaluate(graph)(batch)
    assert pred.shape == (32, 1) and torch.equal(pred, TorchExecutor(graph)(batch)[0])
    name = graph.graph.outputs[0]
    hidden = [n.outputs[0] for n in graph.graph.nodes][0]
    both = TorchExecutor(graph).forward({graph.graph.inputs[0]: batch}, output_names=[hidden, name])
    assert both[0].shape == (32, 16) and torch.equal(both[1], pred)


def test_generate_test_value_and_platform(sin_run):
    _, dataloader, _, graph, _ = sin_run
    x = next(iter(dataloader))[0][:1]
    values = generate_test_value(graph, "cpu", x)
    assert list(values) == ["inputs", "outputs"]
    (in_name, v_in), (out_name, v_out) = *values["inputs"].items(), *values["outputs"].items()
    assert in_name == graph.graph.inputs[0] and torch.equal(v_in, x) and out_name == graph.graph.outputs[0]
    assert torch.equal(v_out, TorchExecutor(graph)(x)[0])
    assert int(get_target_platform("esp32s3", 8)) == 553
    assert isinstance(QuantizationSettingFactory.espdl_setting(), QuantizationSetting)


def test_native_exporter_writes_espq_model_archive(sin_run, tmp_path):
    _, dataloader, _, graph, _ = sin_run
    exporter = NativeExporter()
    path = exporter.export(file_path=str(tmp_path / "sin.native"), graph=graph)
    again = exporter.export(file_path=str(tmp_path / "again.native"), graph=graph)
    data = path.read_bytes()
    assert data == again.read_bytes()  # same model, same bytes
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["ABOUT.txt", "meta.json", "plan.json", "graph.onnx", "float_graph.onnx"]
        assert "not ESP-PPQ's pickle format" in zf.read("ABOUT.txt").decode()
        assert json.loads(zf.read("plan.json")) == json.loads(json.dumps(graph.plan.to_json()))
        assert json.loads(zf.read("meta.json"))["target"] == graph.target.name
        float_model = onnx.load_from_string(zf.read("float_graph.onnx"))
    x = next(iter(dataloader))[0].numpy()
    name = graph.graph.outputs[0]
    np.testing.assert_array_equal(run_float(graph_from_onnx(float_model), x)[name], graph.run_float(x)[name])
    with pytest.raises(ConfigError, match="espdl_quantize"):
        exporter.export(file_path=str(tmp_path / "x.native"), graph=float_model)
    # the eval scripts' load_native_graph: the same model back, without calibration
    loaded = load_native_graph(str(path))
    assert isinstance(loaded, BaseGraph) and loaded.plan.to_json() == graph.plan.to_json()
    batch = next(iter(dataloader))[0]
    assert torch.equal(TorchExecutor(loaded)(batch)[0], TorchExecutor(graph)(batch)[0])
    (tmp_path / "ppq.native").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelLoadError, match="not an espq model archive"):
        load_native_graph(tmp_path / "ppq.native")


def test_skill_analysis_functions_map_onto_espq_analysis(sin_run):
    """run_iteration.py's calls: layerwise/graphwise {op: snr}, statistical_analyse records."""
    _, dataloader, collate_fn, graph, _ = sin_run
    kw = {
        "dataloader": dataloader,
        "collate_fn": collate_fn,
        "running_device": "cpu",
        "steps": 4,
        "verbose": False,
    }
    lw = layerwise_error_analyse(graph=graph, method="snr", **kw)
    gw = graphwise_error_analyse(graph=graph, method="snr", **kw)
    report = graph.analyse(dataloader, steps=4, kinds=("graphwise", "layerwise"), collate_fn=collate_fn)
    gemms = [n.name for n in graph.graph.nodes if n.op_type == "Gemm"]
    assert sorted(lw) == sorted(gemms) == sorted(gw) and len(gemms) == 3
    assert lw == report.layerwise and gw == report.graphwise
    assert all(0 < gw[n] < 0.01 for n in gemms[:2]), gw
    x = torch.cat([b[0] for b in list(dataloader)[:5]]).numpy()  # steps + 1 batches, as ESP-PPQ reads
    out = graph.graph.outputs[0]
    q, f = graph.run(x)[out].astype(np.float64), graph.run_float(x)[out].astype(np.float64)
    # ESP-PPQ's metric: noise/signal per sample (here one value each), averaged over the samples
    assert gw[gemms[-1]] == pytest.approx(np.mean(((q - f) ** 2).sum(1) / ((f**2).sum(1) + 1e-7)), rel=1e-4)
    records = statistical_analyse(
        graph=graph, running_device="cpu", dataloader=dataloader, collate_fn=collate_fn, steps=4
    )
    assert records and all(list(r) == ESP_PPQ_RECORD_KEYS for r in records)
    last = next(r for r in records if r["Op name"] == gemms[-1] and r["Is output"])
    q, f = graph.run(x)[last["Variable name"]].ravel(), graph.run_float(x)[last["Variable name"]].ravel()
    assert last["Noise:Signal Power Ratio"] == pytest.approx(((q - f) ** 2).sum() / (f**2).sum(), rel=1e-5)
    assert last["Float Max"] == pytest.approx(float(f.max())) and last["Quantized Min"] == pytest.approx(
        float(q.min())
    )
    weights = [r for r in records if r["Is parameter"]]
    assert weights and all(0 < r["Noise:Signal Power Ratio"] < 0.01 for r in weights)


def test_compat_errors(sin_run):
    _, dataloader, _, graph, _ = sin_run
    with pytest.raises(ConfigError, match="espdl_quantize"):
        TorchExecutor(graph="model.onnx")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hooks"):
        TorchExecutor(graph).forward(next(iter(dataloader))[0], hooks={"x": object()})
    with pytest.raises(ConfigError, match="no tensor"):
        TorchExecutor(graph).forward(next(iter(dataloader))[0], output_names=["nope"])
    with pytest.raises(ConfigError, match="interested_outputs"):
        layerwise_error_analyse(graph, dataloader, interested_outputs=["y"], verbose=False)
