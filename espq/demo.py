"""``espq demo``: the whole job on a fresh machine, with no downloads beyond PyPI packages.

Trains a small CNN on the 8×8 handwritten digits scikit-learn ships (seconds), exports it to ONNX,
quantizes it for ESP32-P4 and ESP32-S3 at int8, prints float vs quantized accuracy (fake-quant, and the
bit-exact integer runner on the exported file), the error-analysis tables, and writes ``.espdl``,
``.info``, ``.json`` and an HTML report per target into the output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DEMO_TARGETS = ("esp32p4", "esp32s3")


@dataclass
class DemoResult:
    """Accuracies (0–1) per target: float, fake-quant, integer runner; plus written files."""

    float_accuracy: float
    fake_quant: dict[str, float]
    integer: dict[str, float]
    agreement: dict[str, float]
    files: list[Path]


def digits_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's digits as NCHW float32 in [0, 1], split 75/25 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.75 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def make_model() -> torch.nn.Module:
    """A small ESP-DL-friendly CNN: Conv-BN-ReLU blocks, depthwise conv, residual Add, pooling, Gemm."""

    class DigitsNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = torch.nn.Sequential(
                torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU()
            )
            self.dw = torch.nn.Sequential(
                torch.nn.Conv2d(16, 16, 3, padding=1, groups=16),
                torch.nn.BatchNorm2d(16),
                torch.nn.ReLU(),
                torch.nn.Conv2d(16, 16, 1),
                torch.nn.BatchNorm2d(16),
            )
            self.pool = torch.nn.MaxPool2d(2)
            self.conv = torch.nn.Sequential(
                torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU()
            )
            self.head = torch.nn.Sequential(
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            x = torch.relu(x + self.dw(x))
            return self.head(self.conv(self.pool(x)))

    return DigitsNet()


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 12, seed: int = 0) -> None:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=g).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
    model.eval()


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == y))


def run_demo(out_dir: str | Path = "espq-demo", epochs: int = 12, echo=print) -> DemoResult:
    """Run the demo; returns the measured accuracies and the files written."""
    import espq
    from espq.frontends import export_torch, load_onnx
    from espq.sim.integer import IntegerRunner

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = digits_data()
    model = make_model()
    echo(f"training a small CNN on sklearn digits ({len(x_train)} train / {len(x_test)} test images, 8x8)…")
    train(model, x_train, y_train, epochs)
    proto = load_onnx(export_torch(model, input_shape=[1, 1, 8, 8]))
    onnx_path = out / "digits.onnx"
    espq.utils.atomic_write_bytes(onnx_path, proto.SerializeToString())
    graph = espq.load(onnx_path)
    out_name = graph.outputs[0]
    float_acc = _accuracy(espq.run_float(graph, x_test)[out_name], y_test)
    echo(f"float accuracy: {100 * float_acc:.2f} %")
    calib = [x_train[i : i + 64] for i in range(0, 512, 64)]
    result = DemoResult(float_acc, {}, {}, {}, [onnx_path])
    for target in DEMO_TARGETS:
        echo(f"\n== {target} int8 ==")
        qm = espq.quantize(graph, calib, target=target, bits=8)
        fq = qm.run(x_test)[out_name]
        espdl_path = out / f"digits_{target}.espdl"
        qm.export(espdl_path, export_test_values=True, test_inputs=[x_test[:1]])
        runner = IntegerRunner(espdl_path)  # batch 1, as on the chip
        integer = np.concatenate([runner.run(x_test[i : i + 1])[out_name] for i in range(len(x_test))])
        report = qm.analyse(calib, steps=4)
        report.print()
        html = out / f"digits_{target}_report.html"
        report.to_html(html)
        result.fake_quant[target] = _accuracy(fq, y_test)
        result.integer[target] = _accuracy(integer, y_test)
        result.agreement[target] = float(np.mean(np.argmax(fq, 1) == np.argmax(integer, 1)))
        result.files += [espdl_path, espdl_path.with_suffix(".info"), espdl_path.with_suffix(".json"), html]
        echo(
            f"{target}: float {100 * float_acc:.2f} % | "
            f"int8 fake-quant {100 * result.fake_quant[target]:.2f} % | "
            f"int8 on the exported file (integer runner) {100 * result.integer[target]:.2f} % | "
            f"fake-quant and integer runner agree on {100 * result.agreement[target]:.1f} % of predictions"
        )
    echo("\nwritten: " + ", ".join(str(p) for p in result.files))
    return result
