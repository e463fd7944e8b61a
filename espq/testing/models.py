"""Reference torch models for tests and benchmarks, written with their origin's module names.

:class:`MobileNetV2` is torchvision's ImageNet MobileNetV2 (the ESP-DL tutorial's model) with
torchvision's module names (``features.N.conv...``, ``classifier.1``), so torchvision's state dict
(e.g. ``../shared/models/torchvision_mobilenet_v2-b0353104.pth``) loads strictly without torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

#: torchvision's inverted residual setting: expansion t, channels c, repeats n, first stride s
_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
#: ImageNet preprocessing of torchvision's weights: (x/255 - mean) / std per RGB channel
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int, groups: int, relu6: bool) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: Conv (no bias) -> BatchNorm -> ReLU6 (or ReLU)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1x1 (when t > 1) -> depthwise 3x3 -> project 1x1, with a residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, relu6: bool):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(cin, hidden, 1, 1, 1, relu6))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, hidden, relu6),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision.models.mobilenet_v2 (width 1.0, 1000 classes); ``relu6=False`` puts ReLU in place of
    every ReLU6 (the ESP-DL tutorial's setting for layerwise equalization)."""

    def __init__(self, num_classes: int = 1000, relu6: bool = True):
        super().__init__()
        cin, last = 32, 1280
        features: list[nn.Module] = [_conv_bn_act(3, cin, 3, 2, 1, relu6)]
        for t, c, n, s in _SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t, relu6))
                cin = c
        features.append(_conv_bn_act(cin, last, 1, 1, 1, relu6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def torchvision_mobilenet_v2(weights: str | Path, relu6: bool = True) -> MobileNetV2:
    """A :class:`MobileNetV2` in eval mode with torchvision's state dict from ``weights`` (strict)."""
    model = MobileNetV2(relu6=relu6)
    state = torch.load(Path(weights), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()
