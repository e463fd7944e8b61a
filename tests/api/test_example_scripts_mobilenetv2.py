"""ESP-DL's quantize_mobilenetv2/ scripts (quantize_torch_model.py, quantize_onnx_model.py and
datasets/imagenet_util.py's evaluate_ppq_module_with_imagenet), their API calls made the same way on the
torchvision-named MobileNetV2 of tests/api/mobilenet_v2.py at 32x32 with random weights, written anew.

Measured with the patched scripts themselves (esp_ppq -> espq; torchvision replaced by a stand-in with
torchvision's module names loading shared/models/torchvision_mobilenet_v2-b0353104.pth; 64 images of
shared/data/imagenet-samples in class-index folders, Subset 1024 -> 64): the torch script exits 0 in 1302 s,
evaluation Prec@1 79.688 Prec@5 92.188 on 64 images; its .espdl has no test values (export_test_values=False),
run_espdl on 4 images gives the float model's class on 4/4.
"""

from __future__ import annotations

import numpy as np
import torch
from mobilenet_v2 import MobileNetV2, convert_relu6_to_relu
from typer.testing import CliRunner

from espq import QuantizationSettingFactory, run_espdl
from espq.api import espdl_quantize_onnx, espdl_quantize_torch, get_target_platform
from espq.cli import app
from espq.espdl import read
from espq.executor.torch import TorchExecutor
from espq.IR import BaseGraph

TARGET = "esp32s3"
SHAPE = [3, 32, 32]


def _evaluate_ppq_module(model: BaseGraph, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """imagenet_util.py's evaluate_ppq_module_with_imagenet loop: top-1 in percent."""
    executor = TorchExecutor(graph=model, device="cpu")
    correct = total = 0
    for batch_input, batch_label in batches:
        batch_pred = torch.tensor(executor(*[batch_input])[0])
        if isinstance(batch_pred, list):
            batch_pred = torch.tensor(batch_pred)
        _, pred = batch_pred.topk(1, 1, True, True)
        correct += int(pred.t().eq(batch_label.view(1, -1)).sum())
        total += batch_label.numel()
    return 100.0 * correct / total


def test_mobilenetv2_scripts_flow(tmp_path):
    torch.manual_seed(0)
    model = MobileNetV2(num_classes=10)
    images = [torch.randn(8, *SHAPE) for _ in range(2)]
    for m in model.modules():  # BN statistics of the data, so random weights keep a signal to the output
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    with torch.no_grad():
        for x in images:
            model(x)
    model.eval()
    with torch.no_grad():  # labels = the float model's classes
        batches = [(x, model(x).argmax(1)) for x in images]
    # quantize_torch_model.py, 'MixedPrecision_quantization' branch
    setting = QuantizationSettingFactory.espdl_setting()
    setting.dispatching_table.append(
        "/features/features.1/conv/conv.0/conv.0.0/Conv", get_target_platform(TARGET, 16)
    )
    setting.dispatching_table.append(
        "/features/features.1/conv/conv.0/conv.0.2/Clip", get_target_platform(TARGET, 16)
    )
    out = tmp_path / "models" / "torch" / "mobilenet_v2.espdl"
    out.parent.mkdir(parents=True)
    graph = espdl_quantize_torch(
        model=model, espdl_export_file=str(out), calib_dataloader=images, calib_steps=32,
        input_shape=[1] + SHAPE, target=TARGET, num_of_bits=8, collate_fn=lambda b: b.to("cpu"),
        setting=setting, device="cpu", error_report=True, skip_export=False, export_test_values=True,
        verbose=1,
    )  # fmt: skip
    assert isinstance(graph, BaseGraph)
    s16 = {n.name for n in read(out).graph.nodes if n.attr("quant_type") == "S16"}
    assert "/features/features.1/conv/conv.0/conv.0.0/Conv" in s16
    # the script's loop (executor output through torch.tensor, topk) == top-1 of the fake-quant run
    out_name = graph.graph.outputs[0]
    direct = [(graph.run(x.numpy())[out_name].argmax(1) == y.numpy()).mean() for x, y in batches]
    top1 = _evaluate_ppq_module(graph, batches)
    assert top1 == 100.0 * float(np.mean(direct)) and top1 > 10.0  # > chance (10 classes)
    runner = CliRunner()
    r = runner.invoke(app, ["run", str(out), "--check"])
    assert r.exit_code == 0 and "PASS: 1/1" in r.output, r.output

    # quantize_onnx_model.py, 'LayerwiseEqualization_quantization' branch, on the ReLU model's ONNX (the
    # ESP-DL repo's models/torch/mobilenet_v2_relu.onnx is the torch script's <stem>.onnx of that model)
    relu_dir = tmp_path / "relu"
    relu_dir.mkdir()
    espdl_quantize_torch(
        model=convert_relu6_to_relu(model), espdl_export_file=str(relu_dir / "mobilenet_v2.espdl"),
        calib_dataloader=images, calib_steps=2, input_shape=[1] + SHAPE, target=TARGET, error_report=False,
    )  # fmt: skip
    onnx_path = str(relu_dir / "mobilenet_v2.onnx")
    setting = QuantizationSettingFactory.espdl_setting()
    setting.equalization = True
    setting.equalization_setting.iterations = 6
    setting.equalization_setting.value_threshold = 0.5
    setting.equalization_setting.opt_level = 2
    setting.equalization_setting.interested_layers = None
    out2 = tmp_path / "models" / "onnx" / "mobilenet_v2.espdl"
    out2.parent.mkdir(parents=True)
    graph2 = espdl_quantize_onnx(
        onnx_import_file=onnx_path, espdl_export_file=str(out2), calib_dataloader=images, calib_steps=32,
        input_shape=[1] + SHAPE, target=TARGET, num_of_bits=8, collate_fn=lambda b: b.to("cpu"),
        setting=setting, device="cpu", error_report=True, skip_export=False, export_test_values=True,
        verbose=1,
    )  # fmt: skip
    assert "Clip" not in {n.op_type for n in graph2.graph.nodes}  # the ReLU model: no ReLU6 left
    r = runner.invoke(app, ["run", str(out2), "--check"])
    assert r.exit_code == 0 and "PASS: 1/1" in r.output, r.output
    x = batches[0][0][:1].numpy()
    name = graph2.graph.outputs[0]
    e = graph2.plan.tensors[name].exponent
    chip = run_espdl(out2, x, target=TARGET)[name]
    np.testing.assert_array_equal(np.round(chip / 2.0**e), np.round(graph2.run(x)[name] / 2.0**e))
