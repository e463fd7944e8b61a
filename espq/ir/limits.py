"""Size limits on what a model file declares, checked before anything is allocated.

A few bytes of ONNX or `.espdl` can declare tensors of any size (``ConstantOfShape`` of [1, 3, 8, 8e6],
a Resize scale of 1e6, a Pad of 2^40): espq refuses a declared tensor larger than
:data:`MAX_TENSOR_ELEMENTS` elements instead of trying to allocate it. The limit is far above anything
an ESP chip runs (2^25 int8 elements are 32 MiB, the largest PSRAM of any ESP32); the environment
variable ``ESPQ_MAX_TENSOR_ELEMENTS`` raises (or lowers) it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

from espq.errors import ConfigError, ShapeError

MAX_TENSOR_ELEMENTS = 1 << 25
ENV = "ESPQ_MAX_TENSOR_ELEMENTS"


def max_tensor_elements() -> int:
    """The limit: ``ESPQ_MAX_TENSOR_ELEMENTS`` when set (a positive integer), else MAX_TENSOR_ELEMENTS."""
    raw = os.environ.get(ENV)
    if raw is None:
        return MAX_TENSOR_ELEMENTS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"{ENV}={raw!r} must be a positive number of elements")
    return value


def elements(shape: Sequence[int | float]) -> float:
    """Number of elements of ``shape`` (a float: declared dims may overflow int64 products)."""
    return math.prod(float(d) for d in shape) if len(shape) else 1.0


def too_large(shape: Sequence[int | float]) -> bool:
    """True when a tensor of ``shape`` is beyond :func:`max_tensor_elements` (or has a negative dim)."""
    return any(d < 0 for d in shape) or elements(shape) > max_tensor_elements()


def size_message(what: str, shape: Sequence[int | float]) -> str:
    """The one-line explanation of a refused size (what, shape, limit, override)."""
    dims = [int(d) if float(d).is_integer() and abs(d) < 1e18 else float(d) for d in shape]
    return (
        f"{what} declares a tensor of shape {dims} ({elements(shape):.3g} elements), more than the limit of "
        f"{max_tensor_elements()} elements (no ESP chip holds it; a corrupt or hostile file?); "
        f"set {ENV} to allow larger tensors"
    )


def check_shape(what: str, shape: Sequence[int | float]) -> None:
    """Raise :class:`~espq.errors.ShapeError` (:func:`size_message`) when ``shape`` is :func:`too_large`."""
    if too_large(shape):
        raise ShapeError(size_message(what, shape))
