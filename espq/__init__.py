"""espq: post-training quantization of neural networks for Espressif's ESP-DL runtime."""

from espq.errors import EspqError

__version__ = "0.1.0"

__all__ = ["EspqError", "__version__"]
