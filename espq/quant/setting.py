"""Typed quantization settings (the ESP-PPQ-compatible settings object maps onto this record)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from espq.errors import ConfigError
from espq.quant.equalization import EqualizationSetting
from espq.quant.focused import scale_exponent
from espq.quant.observers import OBSERVERS
from espq.quant.recipes import RECIPES
from espq.quant.steps import resolve_steps

Precision = int | str  # 8 | 16 | "float"


@dataclass
class QuantSetting:
    """What ``espq.quantize`` does beyond the defaults.

    * ``calib_algorithm``: activation observer (kl / minmax / percentile / mse); ``None`` = "kl" at 8 bit,
      "minmax" at 16 bit (ESP-PPQ's defaults).
    * ``layer_calib_algorithm``: per-tensor override (tensor name -> observer).
    * ``precision``: per-node override (node name -> 8 | 16 | "float").
    * ``output_scales``: focused quantization (node name -> a power-of-two scale of its first output,
      ESP-PPQ's ``quant_config_modify_setting.custom_config``; :mod:`espq.quant.focused`).
    * ``recipe``: "espdl" (ESP-PPQ-compatible defaults) or "best" (equalization + exponent search + bias
      correction); see :mod:`espq.quant.recipes`.
    * ``equalization`` / ``exponent_search`` / ``bias_correction``: ``None`` = what the recipe says,
      ``True``/``False`` to force a step on or off.
    * ``equalization_setting``: ESP-PPQ's equalization settings; ``None`` = the recipe's.
    * ``steps``: accuracy steps by registry name (:mod:`espq.quant.steps`): ``False`` = off, ``True`` = on
      (the recipe's options), a dict = on with these options over the recipe's, e.g.
      ``{"bias_correction": False, "tqt": {"epochs": 2}}``. Applied after the three fields above.
    """

    calib_algorithm: str | None = None
    layer_calib_algorithm: dict[str, str] = field(default_factory=dict)
    precision: dict[str, Precision] = field(default_factory=dict)
    output_scales: dict[str, float] = field(default_factory=dict)
    recipe: str = "espdl"
    equalization: bool | None = None
    equalization_setting: EqualizationSetting | None = None
    exponent_search: bool | None = None
    bias_correction: bool | None = None
    steps: dict[str, bool | dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.equalization_setting, dict):
            self.equalization_setting = EqualizationSetting(**self.equalization_setting)

    def validate(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}; choose one of {', '.join(RECIPES)}")
        if self.equalization_setting is not None:
            self.equalization_setting.validate()
        resolve_steps((), self.steps)  # names registered, values True/False/dict
        algos = [self.calib_algorithm, *self.layer_calib_algorithm.values()]
        for algo in algos:
            if algo is not None and algo not in OBSERVERS:
                raise ConfigError(f"unknown calib_algorithm {algo!r}; choose one of {', '.join(OBSERVERS)}")
        for name, scale in self.output_scales.items():
            scale_exponent(name, scale)
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
