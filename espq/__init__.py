"""espq: post-training quantization of neural networks for Espressif's ESP-DL runtime."""

from espq.errors import EspqError
from espq.frontends import load
from espq.quant import QuantizedModel, QuantSetting, quantize
from espq.sim.float import run_float
from espq.targets import check_model

__version__ = "0.1.0"

__all__ = [
    "EspqError",
    "QuantSetting",
    "QuantizedModel",
    "__version__",
    "check_model",
    "load",
    "quantize",
    "run_float",
]
