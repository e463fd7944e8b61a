"""Typed quantization settings (the ESP-PPQ-compatible settings object maps onto this record)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from espq.errors import ConfigError
from espq.quant.observers import OBSERVERS

Precision = int | str  # 8 | 16 | "float"


@dataclass
class QuantSetting:
    """What ``espq.quantize`` does beyond the defaults.

    * ``calib_algorithm``: activation observer (kl / minmax / percentile / mse); ``None`` = "kl" at 8 bit,
      "minmax" at 16 bit (ESP-PPQ's defaults).
    * ``layer_calib_algorithm``: per-tensor override (tensor name -> observer).
    * ``precision``: per-node override (node name -> 8 | 16 | "float").
    * ``recipe``: "espdl" (ESP-PPQ-compatible) — other recipes are added by the accuracy work.
    """

    calib_algorithm: str | None = None
    layer_calib_algorithm: dict[str, str] = field(default_factory=dict)
    precision: dict[str, Precision] = field(default_factory=dict)
    recipe: str = "espdl"

    def validate(self) -> None:
        algos = [self.calib_algorithm, *self.layer_calib_algorithm.values()]
        for algo in algos:
            if algo is not None and algo not in OBSERVERS:
                raise ConfigError(f"unknown calib_algorithm {algo!r}; choose one of {', '.join(OBSERVERS)}")
        for name, p in self.precision.items():
            if p not in (8, 16, "float"):
                raise ConfigError(f"precision of node '{name}' must be 8, 16 or 'float', got {p!r}")

    def algorithm(self, bits: int) -> str:
        if self.calib_algorithm is not None:
            return self.calib_algorithm
        return "kl" if bits == 8 else "minmax"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> QuantSetting:
        d = json.loads(data) if isinstance(data, str) else dict(data)
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown setting field(s) {sorted(unknown)}")
        s = cls(**d)
        s.validate()
        return s
