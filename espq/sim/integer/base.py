"""Types shared by the integer runner and its kernels.

Activations travel as :class:`QTensor`: the raw values exactly as the chip holds them (int8/int16
arrays, float32 for float-path tensors, bool for comparisons) in the exported layout (NHWC / NWC for
Conv-like ops), plus the tensor's exponent (``value = int * 2**exponent``; 0 for float/bool).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from espq.espdl.model import EspdlModel, EspdlNode, EspdlTensor
from espq.targets import Target


@dataclass
class QTensor:
    """An activation as the chip stores it."""

    data: np.ndarray
    exponent: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def dequantize(self) -> np.ndarray:
        """float32 values (``data · 2^exponent``); float/bool data returned as float32 / as is."""
        if self.data.dtype == np.bool_:
            return self.data
        if np.issubdtype(self.data.dtype, np.floating):
            return self.data.astype(np.float32, copy=False)
        return np.ldexp(self.data.astype(np.float32), self.exponent).astype(np.float32)


@dataclass
class IntContext:
    """What a kernel may read besides its activation inputs.

    * ``target``: the chip record (rounding, accumulator widths, ...).
    * ``node``: the node being run (``node.attr(...)`` for attributes).
    * ``params``: input index -> initializer (``EspdlTensor``) for inputs that are parameters
      (the kernel's ``inputs[i]`` is then ``None``).
    * ``out_exponents`` / ``out_dtypes``: from the file's ValueInfo of each output.
    * ``out_shapes``: the ValueInfo shape of each output (exported layout; None when not stored).
    * ``state``: per-node persistent storage (StreamingCache), kept across runs until ``reset()``.
    * ``model``: the whole file (e.g. for LUT initializers named by the ``lut`` attribute).
    """

    target: Target
    node: EspdlNode
    model: EspdlModel
    params: dict[int, EspdlTensor] = field(default_factory=dict)
    out_exponents: list[int] = field(default_factory=list)
    out_dtypes: list[np.dtype] = field(default_factory=list)
    out_shapes: list[tuple[int, ...] | None] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def rounding(self) -> str:
        return self.target.rounding.value

    def attr(self, key: str, default: Any = None) -> Any:
        return self.node.attr(key, default)

    def initializer(self, name: str) -> EspdlTensor | None:
        return self.model.graph.initializers.get(name)


IntKernel = Callable[[IntContext, list[QTensor | None]], list[QTensor]]

#: op_type -> kernel. Kernels register with :func:`register_int`.
INT_KERNELS: dict[str, IntKernel] = {}


def register_int(*op_types: str) -> Callable[[IntKernel], IntKernel]:
    """Decorator registering an integer kernel for ``op_types``."""

    def deco(fn: IntKernel) -> IntKernel:
        for op in op_types:
            INT_KERNELS[op] = fn
        return fn

    return deco


def int_bits(dtype: np.dtype) -> int:
    """Bit width of an integer activation dtype (8 for int8, 16 for int16)."""
    return np.dtype(dtype).itemsize * 8


def saturate(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clamp integers to the range of ``dtype`` (``tool::truncate``, esp_dl_facts.md §4.1) and cast."""
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max).astype(dtype)
