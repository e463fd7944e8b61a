"""Quantization: plan (per-tensor specs), one-pass calibration, QuantizedModel."""

from espq.ir.spec import QuantPlan, TensorSpec
from espq.quant.equalization import EqualizationSetting
from espq.quant.model import QuantizedModel
from espq.quant.quantize import quantize
from espq.quant.setting import QuantSetting

__all__ = ["EqualizationSetting", "QuantPlan", "QuantSetting", "QuantizedModel", "TensorSpec", "quantize"]
