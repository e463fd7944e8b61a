"""Real-model accuracy checks on the shared CIFAR-10 data (skipped when ../shared is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import espq

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def cifar(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    root = SHARED / "data" / "cifar10" / split
    if not root.exists():
        pytest.skip(f"{root} not present")
    files = [(p, c) for c, name in enumerate(CLASSES) for p in sorted((root / name).glob("*.jpg"))]
    order = np.random.RandomState(0).permutation(len(files))[:n]
    x = np.stack(
        [
            (np.asarray(Image.open(files[i][0]).convert("RGB"), np.float32).transpose(2, 0, 1) / 255 - MEAN)
            / STD
            for i in order
        ]
    )
    return x, np.array([files[i][1] for i in order])


@pytest.mark.slow
def test_resnet20_int8_s3_kl_within_1p5_points_of_float():
    model = SHARED / "models" / "cifar10_resnet20.onnx"
    if not model.exists():
        pytest.skip("resnet20 not present")
    xc, _ = cifar("calib", 512)
    xv, yv = cifar("val", 500)
    qm = espq.quantize(model, [xc[i : i + 32] for i in range(0, 512, 32)], target="esp32s3", progress=False)
    assert qm.plan.calib_algorithm == "kl"
    f = np.concatenate([qm.run_float(xv[i : i + 100])["logits"].argmax(1) for i in range(0, 500, 100)])
    q = np.concatenate([qm.run(xv[i : i + 100])["logits"].argmax(1) for i in range(0, 500, 100)])
    acc_f, acc_q = np.mean(f == yv), np.mean(q == yv)
    assert acc_f > 0.75  # the float model itself works on these JPEGs (81 % on the full 2,000)
    assert acc_q >= acc_f - 0.015, (acc_f, acc_q)
