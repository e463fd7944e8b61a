"""ESP-PPQ-compatible settings objects (esp_ppq_facts.md §1.6, §6, §7).

Only the fields ESP-PPQ users touch in the espdl flow exist; the classes use ``__slots__``, so setting
a field espq does not have (a typo, or an ESP-PPQ feature espq lacks) raises ``AttributeError`` instead
of being silently ignored. Settings round-trip through JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from espq.api.platforms import TargetPlatform, platform_precision
from espq.errors import ConfigError


class DispatchingTable:
    """Per-op platform overrides: ``append(op_name, platform)`` as in ESP-PPQ (mixed precision)."""

    __slots__ = ("intro_to_dict",)

    def __init__(self) -> None:
        self.intro_to_dict: dict[str, int] = {}

    def append(self, operation: str, platform: TargetPlatform | int) -> None:
        platform_precision(platform)  # validates the value
        self.intro_to_dict[str(operation)] = int(platform)

    def precision(self) -> dict[str, int | str]:
        """Node name -> espq precision (8, 16 or "float")."""
        return {name: platform_precision(p) for name, p in self.intro_to_dict.items()}


@dataclass(slots=True)
class EqualizationSetting:
    """Layerwise equalization parameters (ESP-PPQ defaults)."""

    opt_level: int = 1
    iterations: int = 10
    value_threshold: float = 0.5
    including_bias: bool = False
    bias_multiplier: float = 0.5
    including_act: bool = False
    act_multiplier: float = 0.5
    interested_layers: list[str] | None = field(default_factory=list)


@dataclass(slots=True)
class QuantizeActivationSetting:
    """Activation calibration: ``calib_algorithm`` in kl / minmax / percentile / mse."""

    calib_algorithm: str = "kl"


@dataclass(slots=True)
class QuantizationSetting:
    """The settings object ``QuantizationSettingFactory.espdl_setting()`` returns.

    ESP-PPQ fields: ``equalization``, ``equalization_setting``, ``quantize_activation_setting``,
    ``dispatching_table``, ``bias_correct``. espq's own: ``recipe`` ("espdl" | "best"), ``calib_algorithm``
    per layer (``layer_calib_algorithm``: tensor name -> observer).
    """

    equalization: bool = False
    equalization_setting: EqualizationSetting = field(default_factory=EqualizationSetting)
    quantize_activation_setting: QuantizeActivationSetting = field(default_factory=QuantizeActivationSetting)
    dispatching_table: DispatchingTable = field(default_factory=DispatchingTable)
    bias_correct: bool = False
    recipe: str = "espdl"
    layer_calib_algorithm: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        d = {
            "equalization": self.equalization,
            "equalization_setting": asdict(self.equalization_setting),
            "quantize_activation_setting": asdict(self.quantize_activation_setting),
            "dispatching_table": dict(self.dispatching_table.intro_to_dict),
            "bias_correct": self.bias_correct,
            "recipe": self.recipe,
            "layer_calib_algorithm": dict(self.layer_calib_algorithm),
        }
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> QuantizationSetting:
        d = json.loads(text) if isinstance(text, str) else dict(text)
        s = cls()
        try:
            s.equalization = bool(d.pop("equalization", False))
            s.equalization_setting = EqualizationSetting(**d.pop("equalization_setting", {}))
            s.quantize_activation_setting = QuantizeActivationSetting(
                **d.pop("quantize_activation_setting", {})
            )
            for name, p in d.pop("dispatching_table", {}).items():
                s.dispatching_table.append(name, p)
            s.bias_correct = bool(d.pop("bias_correct", False))
            s.recipe = str(d.pop("recipe", "espdl"))
            s.layer_calib_algorithm = dict(d.pop("layer_calib_algorithm", {}))
        except TypeError as exc:
            raise ConfigError(f"invalid settings JSON: {exc}") from exc
        if d:
            raise ConfigError(f"unknown settings field(s) {sorted(d)}")
        return s


class QuantizationSettingFactory:
    """Factory with ESP-PPQ's names."""

    @staticmethod
    def espdl_setting() -> QuantizationSetting:
        """ESP-PPQ's espdl defaults: KL activation calibration, no equalization."""
        return QuantizationSetting()

    @staticmethod
    def default_setting() -> QuantizationSetting:
        return QuantizationSetting()

    @staticmethod
    def from_json(text: str | dict[str, Any]) -> QuantizationSetting:
        return QuantizationSetting.from_json(text)
