"""Real torch models through espq.load: CIFAR ResNet-20/56 from the trained weights, MobileNetV2 at 224."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from cifar_resnet import load_cifar_resnet

import espq
from espq.ir.onnx_io import graph_to_onnx

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quant"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))


def _ort(graph, x):
    sess = ort.InferenceSession(graph_to_onnx(graph).SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {graph.inputs[0]: x})[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "depth, weights, min_top1",
    [(20, "cifar10_resnet20-12fca82f.th", 0.805), (56, "cifar10_resnet56-4bfd9763.th", 0.825)],
)
def test_cifar_resnet_from_weights(depth, weights, min_top1):
    path = SHARED / "models" / weights
    if not path.exists():
        pytest.skip(f"{path} not present")
    from test_real_models import cifar

    model = load_cifar_resnet(path, depth)
    graph = espq.load(model, input_shape=[1, 3, 32, 32])
    x, y = cifar("val", 2000)
    logits = np.concatenate(
        [espq.run_float(graph, x[i : i + 250])[graph.outputs[0]] for i in range(0, 2000, 250)]
    )
    with torch.no_grad():
        ref = model(torch.as_tensor(x[:64])).numpy()
    assert np.abs(logits[:64] - ref).max() <= 1e-4 * np.abs(ref).max()
    ort_out = np.concatenate([_ort(graph, x[i : i + 1]) for i in range(8)])
    assert np.abs(logits[:8] - ort_out).max() <= 1e-4 * np.abs(ort_out).max()
    assert np.mean(logits.argmax(1) == y) >= min_top1


@pytest.mark.slow
def test_random_mobilenet_v2_224_matches_onnxruntime():
    from mobilenet_v2 import MobileNetV2

    torch.manual_seed(0)
    graph = espq.load(MobileNetV2().eval(), input_shape=[1, 3, 224, 224])
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    ours = espq.run_float(graph, x)[graph.outputs[0]]
    ref = _ort(graph, x)
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
