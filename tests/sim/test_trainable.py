"""Trainable fake-quant module (espq.sim.trainable): bit-exact with FakeQuantSim, gradients flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import espq
from espq.ir.spec import TensorSpec
from espq.sim.trainable import TrainableFakeQuant, fake_quant_ste, round_ste

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()


def cifar_images(split: str, n: int) -> np.ndarray:
    """``n`` normalised CIFAR-10 images (NCHW float32) from ../shared/data, one class after the other."""
    from PIL import Image

    root = SHARED / "data" / "cifar10" / split
    if not root.exists():
        pytest.skip(f"{root} not present")
    files = [p for c in CLASSES for p in sorted((root / c).glob("*.jpg"))[: max(1, n // 10)]][:n]
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    rgb = [np.asarray(Image.open(f).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 for f in files]
    return np.stack([(x - mean) / std for x in rgb]).astype(np.float32)


@pytest.fixture(scope="module")
def demo():
    from espq.demo import digits_data, make_model, train
    from espq.frontends import export_torch, load_onnx

    x_train, y_train, x_test, y_test = digits_data()
    model = make_model()
    train(model, x_train, y_train, epochs=2)
    graph = espq.load(load_onnx(export_torch(model, input_shape=[1, 1, 8, 8])))
    return graph, x_train, x_test, y_test


def test_round_ste_values_and_gradient():
    x = torch.tensor([-2.5, -0.5, 0.5, 1.5, 2.5], requires_grad=True)
    assert round_ste(x, True).tolist() == [-2.0, -0.0, 0.0, 2.0, 2.0]
    assert round_ste(x, False).tolist() == [-2.0, 0.0, 1.0, 2.0, 3.0]
    round_ste(x, False).sum().backward()
    assert x.grad.tolist() == [1.0] * 5


def test_fake_quant_ste_clamps_and_gives_tqt_exponent_gradient():
    spec = TensorSpec(bits=8, exponent=-2)
    x = torch.tensor([0.3, 100.0], requires_grad=True)
    e = torch.tensor(-2.0, requires_grad=True)
    y = fake_quant_ste(x, e, spec, True)
    assert y.tolist() == [0.25, 127 * 0.25]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]  # saturated input: no gradient
    # d/de [round(x 2^-e) 2^e] = ln2 (q - x) inside the range, ln2 q at saturation
    want = np.log(2) * ((0.25 - 0.3) + 127 * 0.25)
    assert float(e.grad) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("target", ["esp32s3", "esp32p4", "esp32"])
def test_demo_model_eval_equals_fakequant_bit_for_bit(demo, target):
    graph, x_train, x_test, _ = demo
    qm = espq.quantize(graph, [x_train[i : i + 64] for i in range(0, 256, 64)], target=target, progress=False)
    ref = qm.run(x_test)[graph.outputs[0]]
    module = TrainableFakeQuant(qm.graph, qm.plan, qm.target).eval()
    with torch.no_grad():
        out = module(torch.as_tensor(x_test)).numpy()
    assert np.array_equal(out, ref)
    # with gradients on (training forward), the values are still the simulator's
    module.train()
    out_grad = module(torch.as_tensor(x_test[:32]))
    assert np.array_equal(out_grad.detach().numpy(), ref[:32])


def test_demo_model_gradients_reach_every_weight_and_exponents(demo):
    graph, x_train, x_test, y_test = demo
    qm = espq.quantize(
        graph, [x_train[i : i + 64] for i in range(0, 256, 64)], target="esp32s3", progress=False
    )
    module = TrainableFakeQuant(qm.graph, qm.plan, qm.target, train_exponents=True)
    loss = torch.nn.functional.cross_entropy(
        module(torch.as_tensor(x_test[:64])), torch.as_tensor(y_test[:64])
    )
    loss.backward()
    weight_grads = [float(w.grad.abs().sum()) for w in module.weights]
    assert len(weight_grads) >= 10 and all(g > 0 for g in weight_grads)
    alpha_grads = [float(a.grad.abs().sum()) for a in module.alphas if a.grad is not None]
    assert sum(g > 0 for g in alpha_grads) >= len(module.alphas) // 2
    assert module.exponents() == TrainableFakeQuant(qm.graph, qm.plan, qm.target).exponents()


def test_resnet20_eval_equals_fakequant_bit_for_bit():
    model = SHARED / "models" / "cifar10_resnet20.onnx"
    if not model.exists():
        pytest.skip("resnet20 not present")
    x = cifar_images("calib", 32)
    xv = cifar_images("val", 20)
    qm = espq.quantize(model, [x], target="esp32s3", progress=False)
    name = qm.graph.outputs[0]
    ref = qm.run(xv)[name]
    module = TrainableFakeQuant(qm.graph, qm.plan, qm.target, train_exponents=True).eval()
    with torch.no_grad():
        out = module(torch.as_tensor(xv)).numpy()
    assert np.array_equal(out, ref)
    module.train()
    y = module(torch.as_tensor(xv))
    assert np.array_equal(y.detach().numpy(), ref)
    y.square().mean().backward()  # GlobalAveragePool (chip formula) passes gradients to the first conv
    first = module.weight(qm.graph.nodes[0].inputs[1])
    assert float(first.grad.abs().sum()) > 0
