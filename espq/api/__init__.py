"""ESP-PPQ-compatible API: change ``from esp_ppq.api import ...`` to ``from espq.api import ...``."""

from espq.api.autoquant import (
    AutoQuantSearchSetting,
    espdl_auto_quantize_onnx,
    load_best_setting,
    low_latency_candidate_filter,
)
from espq.api.espdl import espdl_quantize_onnx, espdl_quantize_tf, espdl_quantize_torch
from espq.api.platforms import TargetPlatform, get_target_platform
from espq.api.settings import (
    DispatchingTable,
    EqualizationSetting,
    QuantizationSetting,
    QuantizationSettingFactory,
)

__all__ = [
    "AutoQuantSearchSetting",
    "DispatchingTable",
    "EqualizationSetting",
    "QuantizationSetting",
    "QuantizationSettingFactory",
    "TargetPlatform",
    "espdl_auto_quantize_onnx",
    "espdl_quantize_onnx",
    "espdl_quantize_tf",
    "espdl_quantize_torch",
    "get_target_platform",
    "load_best_setting",
    "low_latency_candidate_filter",
]
