"""ESP-PPQ-compatible settings objects: every field of ESP-PPQ 1.3.12's ``QuantizationSetting``.

The classes and field names are ESP-PPQ's (``esp_ppq/api/setting.py``), with its defaults; the
factory's ``espdl_setting(num_of_bits)`` changes the same fields ESP-PPQ's does. What espq does with
each field is in :mod:`espq.api.setting_support`: fields espq implements work, fields it does not
implement raise one :class:`~espq.errors.ConfigError` at quantize time when switched on
(:meth:`QuantizationSetting.check`). Reading or setting a field that does not exist (a typo) raises
:class:`UnknownSettingError` with a did-you-mean. Settings round-trip through JSON.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from typing import Any

from espq.api.platforms import TargetPlatform, platform_precision
from espq.api.setting_support import LUT_TARGET_OPS, check_setting
from espq.errors import ConfigError

#: the placeholder entries ESP-PPQ's ``DispatchingTable`` starts with (and writes to its JSON); espq drops
#: them when reading ESP-PPQ's JSON
PPQ_PLACEHOLDER_DISPATCHINGS = {
    "YOUR OEPRATION NAME": "TARGET PLATFORM(INT)", "FP32 OPERATION NAME": 0, "SOI OPERATION NAME": -1,
    "DSP INT8 OPERATION NAME": 301, "TRT INT8 OPERATION NAME": 101, "NXP INT8 OPERATION NAME": 501,
    "PPL INT8 OPERATION NAME": 201,
}  # fmt: skip


class UnknownSettingError(ConfigError, AttributeError):
    """A settings field that does not exist was read or written (also an ``AttributeError``, so
    ``hasattr``/``getattr(obj, name, default)`` keep working)."""


class QuantizationVisibility(Enum):
    """ESP-PPQ's export visibility of Clip/Pad quantization parameters (same members and values)."""

    FORCE_EXPORT = 1
    EXPORT_WHEN_ACTIVE = 2
    INTERNAL = 3


class _Fields:
    """Base of the settings classes: only declared fields can be read or written."""

    __slots__ = ()

    def _unknown(self, name: str) -> UnknownSettingError:
        known = [f.name for f in fields(self)]  # type: ignore[arg-type]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"its fields are: {', '.join(known)}"
        return UnknownSettingError(f"{type(self).__name__} has no field '{name}'; {hint}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise self._unknown(name)
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:  # only called when normal lookup fails
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._unknown(name)


def _setting(cls: type) -> type:
    return dataclass(slots=True)(cls)


@_setting
class GraphFormatSetting(_Fields):
    """Graph clean-up passes (espq always runs its equivalents)."""

    format_constant_op: bool = True
    fuse_conv_bn: bool = True
    fuse_swish: bool = True
    format_paramters: bool = True  # ESP-PPQ's spelling
    format_cast: bool = True
    delete_isolate: bool = True


@_setting
class SSDEqualizationSetting(_Fields):
    """ESP-PPQ's SSD equalization with loss check."""

    opt_level: int = 1
    channel_ratio: float = 0.5
    loss_threshold: float = 0.8
    layer_norm: bool = False
    iteration: int = 3


@_setting
class EqualizationSetting(_Fields):
    """Layerwise equalization parameters."""

    opt_level: int = 1
    iterations: int = 10
    value_threshold: float = 0.5
    including_bias: bool = False
    bias_multiplier: float = 0.5
    including_act: bool = False
    act_multiplier: float = 0.5
    interested_layers: list[str] | None = field(default_factory=list)


@_setting
class WeightSplitSetting(_Fields):
    """Horizontal layer split."""

    interested_layers: list[str] = field(default_factory=list)
    value_threshold: float = 2.0
    method: str = "balance"


@_setting
class ChannelSplitSetting(_Fields):
    """OCS channel split."""

    opt_level: int = 1
    iterations: int = 10
    value_threshold: float = 0.5
    including_bias: bool = False
    bias_multiplier: float = 0.5
    including_act: bool = False
    act_multiplier: float = 0.5
    interested_layers: list[str] = field(default_factory=list)


@_setting
class MatrixFactorizationSetting(_Fields):
    """Matrix factorization split (experimental in ESP-PPQ)."""

    interested_layers: list[str] = field(default_factory=list)
    method: str = "svd"


@_setting
class ActivationQuantizationSetting(_Fields):
    """Activation calibration: ``calib_algorithm`` in kl / minmax / percentile / mse (None: per bit width)."""

    calib_algorithm: str | None = None
    calib_algorithm_per_layer: dict[str, str] = field(default_factory=dict)


@_setting
class QuantConfigModifySetting(_Fields):
    """Focused quantization: ``custom_config`` {op name: scale}."""

    custom_config: dict[str, Any] = field(default_factory=dict)


@_setting
class ParameterQuantizationSetting(_Fields):
    """Parameter (weight/bias) quantization."""

    calib_algorithm: str | None = None
    calib_algorithm_per_layer: dict[str, str] = field(default_factory=dict)
    quantize_passive_parameter: bool = True
    clip_visiblity: QuantizationVisibility = QuantizationVisibility.INTERNAL  # ESP-PPQ's spelling
    pad_visiblity: QuantizationVisibility = QuantizationVisibility.INTERNAL
    baking_parameter: bool = True


@_setting
class LSQSetting(_Fields):
    """LSQ fine-tuning."""

    interested_layers: list[str] = field(default_factory=list)
    lr: float = 1e-5
    collecting_device: str = "cuda"
    steps: int = 500
    is_scale_trainable: bool = True
    gamma: float = 0.0
    block_size: int = 4


@_setting
class TQTSetting(_Fields):
    """TQT fine-tuning."""

    interested_layers: list[str] = field(default_factory=list)
    lr: float = 1e-5
    collecting_device: str = "cpu"
    steps: int = 500
    is_scale_trainable: bool = True
    gamma: float = 0.0
    block_size: int = 4
    int_lambda: float = 0.0


@_setting
class BlockwiseReconstructionSetting(_Fields):
    """Blockwise reconstruction fine-tuning."""

    interested_layers: list[str] = field(default_factory=list)
    is_scale_trainable: bool = False
    lr: float = 1e-3
    steps: int = 5000
    gamma: float = 1.0
    collecting_device: str = "cuda"
    block_size: int = 4


@_setting
class BiasCorrectionSetting(_Fields):
    """Bias correction parameters."""

    interested_layers: list[str] = field(default_factory=list)
    block_size: int = 4
    steps: int = 32
    collecting_device: str = "executor"


@_setting
class QuantizationFusionSetting(_Fields):
    """Quantization fusion and alignment rules."""

    remove_useless_quantization: bool = True
    fuse_activation: bool = True
    fuse_passive_op: bool = True
    align_quantization: bool = True
    align_avgpooling_to: str = "None"
    align_elementwise_to: str = "Align to Large"
    align_concat_to: str = "Align to Output"
    align_resize_to: str = "Align to Output"
    force_alignment_overlap: bool = True


@_setting
class LUTOptimizationSetting(_Fields):
    """int16 LUT activations: table ``step`` (power of two) and the op types to turn into LUT ops."""

    step: int = 32
    target_ops: list[str] = field(default_factory=lambda: list(LUT_TARGET_OPS))


@_setting
class TemplateSetting(_Fields):
    """ESP-PPQ's placeholder for custom passes."""

    my_first_parameter: str = "This Parameter just shows you how to create your own parameter."


@_setting
class DispatchingTable(_Fields):
    """Per-op platform overrides: ``append(op_name, platform)`` as in ESP-PPQ (mixed precision).

    ``dispatchings`` starts empty: ESP-PPQ's starts with placeholder names it ignores, espq rejects
    node names the model does not have.
    """

    intro_0: str = "Dispatching Table is a str -> TargetPlatform dictionary."
    intro_1: str = "Any thing listed in this table will override the policy of PPQ dispatcher."
    intro_2: str = "Example above shows you how to edit a valid dispatching table."
    attention: str = "All operation names that can not be found with your graph will be ignored."
    dispatchings: dict[str, int] = field(default_factory=dict)

    def append(self, operation: str, platform: TargetPlatform | int) -> None:
        """Run node ``operation`` on ``platform`` (a :class:`TargetPlatform` or its int value)."""
        platform_precision(platform)  # validates the value
        self.dispatchings[str(operation)] = int(platform)

    def precision(self) -> dict[str, int | str]:
        """Node name -> espq precision (8, 16 or "float")."""
        return {name: platform_precision(p) for name, p in self.dispatchings.items()}


@_setting
class QuantizationSetting(_Fields):
    """The settings object of ``QuantizationSettingFactory``: ESP-PPQ 1.3.12's fields and defaults.

    espq's own fields: ``recipe`` ("espdl" | "best", :mod:`espq.quant.recipes`) and
    ``layer_calib_algorithm`` (tensor name -> observer).
    """

    dispatcher: str = "conservative"
    graph_format_setting: GraphFormatSetting = field(default_factory=GraphFormatSetting)
    ssd_equalization: bool = False
    ssd_setting: SSDEqualizationSetting = field(default_factory=SSDEqualizationSetting)
    equalization: bool = False
    equalization_setting: EqualizationSetting = field(default_factory=EqualizationSetting)
    weight_split: bool = False
    weight_split_setting: WeightSplitSetting = field(default_factory=WeightSplitSetting)
    channel_split: bool = False
    channel_split_setting: ChannelSplitSetting = field(default_factory=ChannelSplitSetting)
    matrix_factorization: bool = False
    matrix_factorization_setting: MatrixFactorizationSetting = field(
        default_factory=MatrixFactorizationSetting
    )
    quantize_activation: bool = True
    quantize_activation_setting: ActivationQuantizationSetting = field(
        default_factory=ActivationQuantizationSetting
    )
    quant_config_modify: bool = False
    quant_config_modify_setting: QuantConfigModifySetting = field(default_factory=QuantConfigModifySetting)
    quantize_parameter: bool = True
    quantize_parameter_setting: ParameterQuantizationSetting = field(
        default_factory=ParameterQuantizationSetting
    )
    lsq_optimization: bool = False
    lsq_optimization_setting: LSQSetting = field(default_factory=LSQSetting)
    tqt_optimization: bool = False
    tqt_optimization_setting: TQTSetting = field(default_factory=TQTSetting)
    blockwise_reconstruction: bool = False
    blockwise_reconstruction_setting: BlockwiseReconstructionSetting = field(
        default_factory=BlockwiseReconstructionSetting
    )
    bias_correct: bool = False
    bias_correct_setting: BiasCorrectionSetting = field(default_factory=BiasCorrectionSetting)
    fusion: bool = True
    fusion_setting: QuantizationFusionSetting = field(default_factory=QuantizationFusionSetting)
    espdl_attention_fusion: bool = True
    lut_optimization: bool = True
    lut_optimization_setting: LUTOptimizationSetting = field(default_factory=LUTOptimizationSetting)
    extension: bool = False
    extension_setting: TemplateSetting = field(default_factory=TemplateSetting)
    convtranspose_decomposition: bool = True
    version: str = "0.6.6"
    signature: str = "PPL Quantization Tool"
    dispatching_table: DispatchingTable = field(default_factory=DispatchingTable)
    recipe: str = "espdl"
    layer_calib_algorithm: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise one :class:`ConfigError` listing every switched-on field espq does not implement."""
        check_setting(self)

    def int16_lut_step(self) -> int:
        """Table step of int16 LUT activations these settings ask for (0: ``lut_optimization`` off)."""
        return self.lut_optimization_setting.step if self.lut_optimization else 0

    def to_json(self) -> str:
        """The settings as JSON (enums by member name); :meth:`from_json` reads it back."""
        return json.dumps(_encode(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> QuantizationSetting:
        """Settings from :meth:`to_json`'s output or ESP-PPQ's ``QuantizationSetting.to_json()`` (its enum
        encoding; its placeholder dispatching entries are dropped); missing fields keep their defaults."""
        data = json.loads(text) if isinstance(text, str) else dict(text)
        setting = cls()
        _assign(setting, data, "setting")
        return setting


def _encode(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _encode(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Enum):
        return obj.name
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    return obj


def _assign(obj: Any, data: dict[str, Any], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid settings JSON at {where}: expected an object, got {type(data).__name__}")
    for key, value in data.items():
        if key not in obj.__dataclass_fields__:
            raise ConfigError(f"invalid settings JSON at {where}: {obj._unknown(key)}")
        current = getattr(obj, key)
        if is_dataclass(current):
            _assign(current, value, f"{where}.{key}")
        elif isinstance(current, Enum):
            if isinstance(value, dict) and set(value) == {"__ppq_enum__", "name"}:  # ESP-PPQ's encoding
                value = value["name"]
            try:
                setattr(obj, key, type(current)[value])
            except KeyError:
                names = ", ".join(type(current).__members__)
                msg = f"invalid settings JSON at {where}.{key}: {value!r} is not one of {names}"
                raise ConfigError(msg) from None
        else:
            setattr(obj, key, value)
    if isinstance(obj, DispatchingTable):
        obj.dispatchings = {
            k: v for k, v in obj.dispatchings.items() if PPQ_PLACEHOLDER_DISPATCHINGS.get(k, object()) != v
        }
        for name, platform in obj.dispatchings.items():
            try:
                platform_precision(platform)
            except ConfigError as exc:
                raise ConfigError(f"invalid settings JSON at {where}.dispatchings['{name}']: {exc}") from exc


class QuantizationSettingFactory:
    """Factory with ESP-PPQ's names."""

    @staticmethod
    def espdl_setting(num_of_bits: int = 8) -> QuantizationSetting:
        """ESP-PPQ's ESP-DL settings: the fields its ``espdl_setting`` changes, with its values."""
        s = QuantizationSetting()
        s.quantize_parameter_setting.clip_visiblity = QuantizationVisibility.EXPORT_WHEN_ACTIVE
        s.quantize_parameter_setting.pad_visiblity = QuantizationVisibility.EXPORT_WHEN_ACTIVE
        s.quantize_parameter_setting.baking_parameter = False
        s.quantize_activation_setting.calib_algorithm = "kl"
        s.fusion_setting.align_elementwise_to = "Align to Output"
        s.fusion_setting.force_alignment_overlap = False
        s.dispatcher = "allin"
        if num_of_bits == 16:
            s.quantize_parameter_setting.calib_algorithm = "minmax"
            s.quantize_activation_setting.calib_algorithm = "minmax"
        return s

    @staticmethod
    def default_setting() -> QuantizationSetting:
        """ESP-PPQ's generic defaults (``conservative`` dispatcher...): espq rejects the fields that differ
        from the ESP-DL ones at quantize time; use :meth:`espdl_setting` for ESP-DL."""
        return QuantizationSetting()

    @staticmethod
    def from_json(text: str | dict[str, Any]) -> QuantizationSetting:
        """Settings from :meth:`QuantizationSetting.to_json`'s output."""
        return QuantizationSetting.from_json(text)
