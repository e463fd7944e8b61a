"""ESP-PPQ-compatible API: change ``from esp_ppq.api import ...`` to ``from espq.api import ...``."""

from espq.api.autoquant import (
    AutoQuantSearchSetting,
    espdl_auto_quantize_onnx,
    load_best_setting,
    low_latency_candidate_filter,
)
from espq.api.compat import DISABLE_CUDA_KERNEL, ENABLE_CUDA_KERNEL, generate_test_value
from espq.api.espdl import espdl_quantize_onnx, espdl_quantize_tf, espdl_quantize_torch
from espq.api.platforms import TargetPlatform, get_target_platform
from espq.api.settings import (
    ActivationQuantizationSetting,
    BiasCorrectionSetting,
    BlockwiseReconstructionSetting,
    ChannelSplitSetting,
    DispatchingTable,
    EqualizationSetting,
    GraphFormatSetting,
    LSQSetting,
    LUTOptimizationSetting,
    ParameterQuantizationSetting,
    QuantizationFusionSetting,
    QuantizationSetting,
    QuantizationSettingFactory,
    QuantizationVisibility,
    SSDEqualizationSetting,
    TemplateSetting,
    TQTSetting,
    WeightSplitSetting,
)
from espq.export.streaming import insert_streaming_cache_on_var
from espq.parser.native import load_native_graph

__all__ = [
    "DISABLE_CUDA_KERNEL",
    "ENABLE_CUDA_KERNEL",
    "ActivationQuantizationSetting",
    "BiasCorrectionSetting",
    "BlockwiseReconstructionSetting",
    "ChannelSplitSetting",
    "GraphFormatSetting",
    "LSQSetting",
    "LUTOptimizationSetting",
    "ParameterQuantizationSetting",
    "QuantizationFusionSetting",
    "QuantizationVisibility",
    "SSDEqualizationSetting",
    "TQTSetting",
    "TemplateSetting",
    "WeightSplitSetting",
    "generate_test_value",
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
    "insert_streaming_cache_on_var",
    "load_native_graph",
    "load_best_setting",
    "low_latency_candidate_filter",
]
