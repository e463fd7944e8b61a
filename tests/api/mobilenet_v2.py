"""torchvision's MobileNetV2 for the API tests (the module lives in :mod:`espq.testing.models`) and the seed
tutorial's ReLU6 -> ReLU step."""

from __future__ import annotations

from torch import nn

from espq.testing.models import MobileNetV2


def convert_relu6_to_relu(model: nn.Module) -> nn.Module:
    """The seed tutorial's preprocessing step: every ReLU6 becomes ReLU (in place)."""
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(model, name, nn.ReLU(inplace=True))
        else:
            convert_relu6_to_relu(child)
    return model


__all__ = ["MobileNetV2", "convert_relu6_to_relu"]
