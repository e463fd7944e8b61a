"""torchvision's ImageNet MobileNetV2 (the ESP-DL tutorial's model) rebuilt by espq.testing.models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import espq
from espq.testing.models import IMAGENET_MEAN, IMAGENET_STD, MobileNetV2, torchvision_mobilenet_v2

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WEIGHTS = SHARED / "models" / "torchvision_mobilenet_v2-b0353104.pth"
IMAGES = SHARED / "data" / "imagenet-samples"


def _images(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` shared samples, center crop 224 (their short side is 256), x/255 then mean/std."""
    files = sorted(IMAGES.glob("*.JPEG"))[:n]
    xs = []
    for f in files:
        img = Image.open(f).convert("RGB")
        w, h = img.size
        left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
        x = np.asarray(img.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
        xs.append(((x - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).transpose(2, 0, 1))
    return np.stack(xs).astype(np.float32), np.array([int(f.name.split("_")[0]) for f in files])


def test_module_has_torchvision_names_and_size():
    state = MobileNetV2().state_dict()
    assert (
        sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k) == 3504872
    )
    assert "features.1.conv.0.0.weight" in state and "features.2.conv.3.running_var" in state
    assert state["classifier.1.weight"].shape == (1000, 1280)
    relus = [m for m in MobileNetV2(relu6=False).modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == 35 and not any(
        isinstance(m, torch.nn.ReLU6) for m in MobileNetV2(relu6=False).modules()
    )


@pytest.mark.slow
def test_torchvision_weights_load_and_classify():
    if not WEIGHTS.exists() or not IMAGES.exists():
        pytest.skip("shared torchvision MobileNetV2 weights or ImageNet samples not present")
    model = torchvision_mobilenet_v2(WEIGHTS)  # strict load: every torchvision key matches
    x, y = _images(16)
    with torch.no_grad():
        ref = model(torch.as_tensor(x)).numpy()
    graph = espq.load(model, input_shape=[1, 3, 224, 224])
    assert [n.op_type for n in graph.nodes].count("Clip") == 35  # ReLU6 exported as Clip(0, 6)
    ours = espq.run_float(graph, x)[graph.outputs[0]]
    assert np.abs(ours - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.sum(ref.argmax(1) == y) >= 12  # float top-1 on the 500 samples is about 83 %
