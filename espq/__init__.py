"""espq: post-training quantization of neural networks for Espressif's ESP-DL runtime.

Main entry points: :func:`load`, :func:`run_float`, :func:`check_model`, :func:`quantize` (→
:class:`QuantizedModel` with ``run``, ``analyse``, ``export``), :func:`auto_mixed_precision`,
:func:`run_espdl` (bit-exact ESP-DL integer inference of a ``.espdl``), :func:`autoquant` (search the
quantization settings within latency/size budgets), and the ESP-PPQ-compatible
functions of :mod:`espq.api`.
"""

from espq import autoquant, utils
from espq._version import __version__
from espq.api import (
    QuantizationSetting,
    QuantizationSettingFactory,
    TargetPlatform,
    espdl_quantize_onnx,
    espdl_quantize_tf,
    espdl_quantize_torch,
    get_target_platform,
)
from espq.check import check_model
from espq.errors import EspqError
from espq.frontends import load
from espq.quant import QuantizedModel, QuantSetting, quantize
from espq.quant.mixed_precision import auto_mixed_precision
from espq.sim.float import run_float
from espq.sim.integer import run_espdl

__all__ = [
    "EspqError",
    "QuantSetting",
    "QuantizationSetting",
    "QuantizationSettingFactory",
    "QuantizedModel",
    "TargetPlatform",
    "__version__",
    "auto_mixed_precision",
    "autoquant",
    "check_model",
    "espdl_quantize_onnx",
    "espdl_quantize_tf",
    "espdl_quantize_torch",
    "get_target_platform",
    "load",
    "quantize",
    "run_espdl",
    "run_float",
    "utils",
]
