"""ESP-PPQ's ``esp_ppq.executor`` path: ``from espq.executor import TorchExecutor``."""

from espq.executor.torch import TorchExecutor

__all__ = ["TorchExecutor"]
