"""What espq does with each ESP-PPQ 1.3.12 setting field (the data behind ``QuantizationSetting.check``
and the README's compatibility table).

Every field has a :class:`FieldSupport`: its status, the values that work (``None``: every valid value)
and a note (what espq does; for a value that does not work, the nearest espq feature). A field with a
``switch`` is only checked when that switch is on. :func:`check_setting` raises one
:class:`~espq.errors.ConfigError` naming every field whose value espq does not implement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from espq.errors import ConfigError

IMPLEMENTED = "implemented"
FIXED = "fixed (espq always does this)"
NO_EFFECT = "accepted, no effect"
MISSING = "not implemented"
PART = "part of a switch"

#: ESP-PPQ's ``LUTOptimizationSetting.target_ops`` default (the ops its int16 LUT fusion rewrites)
LUT_TARGET_OPS = (
    "Swish", "SiLU", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Erf", "Gelu", "LeakyRelu",
    "Softplus", "Exp", "Log", "Sqrt", "Cos", "Sin", "Tan",
)  # fmt: skip

#: the fields ``QuantizationSettingFactory.espdl_setting`` changes (hint when one of them is wrong)
ESPDL_FIELDS = (
    "dispatcher", "quantize_parameter_setting.clip_visiblity", "quantize_parameter_setting.pad_visiblity",
    "fusion_setting.align_elementwise_to", "fusion_setting.force_alignment_overlap",
)  # fmt: skip


@dataclass(frozen=True)
class FieldSupport:
    """espq's support of one field: status, accepted values (or a predicate) and a note."""

    status: str
    note: str
    accepted: tuple[Any, ...] | Callable[[Any], bool] | None = None
    switch: str | None = None

    def works(self, value: Any) -> bool:
        """Whether espq implements ``value`` for this field."""
        if self.accepted is None:
            return True
        if callable(self.accepted):
            return bool(self.accepted(value))
        if isinstance(value, str):
            return value.lower() in [a.lower() for a in self.accepted if isinstance(a, str)]
        return any(value == a and type(value) is type(a) for a in self.accepted)


def _fixed(note: str, value: Any = True) -> FieldSupport:
    return FieldSupport(FIXED, note, (value,))


def _missing(nearest: str) -> FieldSupport:
    return FieldSupport(MISSING, nearest, (False,))


def _part(switch: str, names: str, prefix: str = "") -> dict[str, FieldSupport]:
    """Sub-setting fields only read when ``switch`` is on (checked through the switch itself)."""
    prefix = prefix or f"{switch}_setting"
    return {
        f"{prefix}.{n}": FieldSupport(PART, f"only read with {switch}=True", None, switch)
        for n in names.split()
    }


def _power_of_two(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0 and v & (v - 1) == 0


_FLOAT_OPS = "dispatching_table.append(op, TargetPlatform.FP32)"
_RULE = "espq's fixed ESP-DL quantization rules (op table)"

FIELDS: dict[str, FieldSupport] = {
    "dispatcher": FieldSupport(
        IMPLEMENTED,
        "'allin' (every op the target supports is quantized); per-op overrides: dispatching_table",
        ("allin",),
    ),
    "graph_format_setting.format_constant_op": _fixed("True: Constant ops become initializers"),
    "graph_format_setting.fuse_conv_bn": _fixed("True: BatchNorm is folded into the Conv/Gemm before it"),
    "graph_format_setting.fuse_swish": _fixed("True: x*Sigmoid(x) becomes Swish"),
    "graph_format_setting.format_paramters": _fixed("True: parameters are handled per consumer"),
    "graph_format_setting.format_cast": _fixed("True: Cast ops are folded or rejected by the op table"),
    "graph_format_setting.delete_isolate": _fixed("True: nodes not reaching an output are removed"),
    "ssd_equalization": _missing("equalization=True (layerwise equalization)"),
    **_part("ssd_equalization", "opt_level channel_ratio loss_threshold layer_norm iteration", "ssd_setting"),
    "equalization": FieldSupport(IMPLEMENTED, "layerwise equalization (espq.quant.equalization)"),
    "equalization_setting.opt_level": FieldSupport(IMPLEMENTED, "1 or 2", None, "equalization"),
    "equalization_setting.iterations": FieldSupport(IMPLEMENTED, "positive integer", None, "equalization"),
    "equalization_setting.value_threshold": FieldSupport(IMPLEMENTED, ">= 0", None, "equalization"),
    "equalization_setting.including_bias": FieldSupport(
        IMPLEMENTED, "bias in the scale", None, "equalization"
    ),
    "equalization_setting.bias_multiplier": FieldSupport(
        IMPLEMENTED, "with including_bias", None, "equalization"
    ),
    "equalization_setting.including_act": FieldSupport(
        MISSING, "equalization on weights (and bias) only", (False,), "equalization"
    ),
    "equalization_setting.act_multiplier": FieldSupport(
        NO_EFFECT, "only read with including_act, which espq does not implement", None, "equalization"
    ),
    "equalization_setting.interested_layers": FieldSupport(
        IMPLEMENTED, "node names; empty/None: all", None, "equalization"
    ),
    "weight_split": _missing(
        "dispatching_table.append(layer, an INT16 platform) for layers with outlier weights"
    ),
    **_part("weight_split", "interested_layers value_threshold method"),
    "channel_split": _missing("equalization=True (layerwise equalization)"),
    **_part(
        "channel_split",
        "opt_level iterations value_threshold including_bias bias_multiplier including_act act_multiplier"
        " interested_layers",
    ),
    "matrix_factorization": _missing("none: espq keeps the trained weights"),
    **_part("matrix_factorization", "interested_layers method"),
    "quantize_activation": _fixed(f"True; to keep ops in float: {_FLOAT_OPS}"),
    "quantize_activation_setting.calib_algorithm": FieldSupport(
        IMPLEMENTED, "kl / minmax / percentile / mse; None: kl at 8 bit, minmax at 16 bit"
    ),
    "quantize_activation_setting.calib_algorithm_per_layer": FieldSupport(
        MISSING, "setting.layer_calib_algorithm (espq: output tensor name -> observer)", ({},)
    ),
    "quant_config_modify": FieldSupport(
        IMPLEMENTED, "focused quantization: fixed power-of-two output scales (espq.quant.focused)"
    ),
    **_part("quant_config_modify", "custom_config"),
    "quantize_parameter": _fixed(f"True; to keep ops in float: {_FLOAT_OPS}"),
    "quantize_parameter_setting.calib_algorithm": FieldSupport(
        IMPLEMENTED,
        "power-of-two min-max weights (None or 'minmax'); exponent search: recipe='best'",
        (None, "minmax"),
    ),
    "quantize_parameter_setting.calib_algorithm_per_layer": FieldSupport(
        MISSING, "power-of-two min-max weights for every layer", ({},)
    ),
    "quantize_parameter_setting.quantize_passive_parameter": _fixed(
        "True: biases and Clip/Pad constants are quantized"
    ),
    "quantize_parameter_setting.clip_visiblity": FieldSupport(
        FIXED,
        "EXPORT_WHEN_ACTIVE (espdl_setting's value): Clip bounds are exported quantized",
        lambda v: getattr(v, "name", None) == "EXPORT_WHEN_ACTIVE",
    ),
    "quantize_parameter_setting.pad_visiblity": FieldSupport(
        FIXED,
        "EXPORT_WHEN_ACTIVE (espdl_setting's value): Pad values are exported quantized",
        lambda v: getattr(v, "name", None) == "EXPORT_WHEN_ACTIVE",
    ),
    "quantize_parameter_setting.baking_parameter": FieldSupport(
        NO_EFFECT, "simulation detail: quantized weights are the same either way"
    ),
    "lsq_optimization": FieldSupport(
        IMPLEMENTED,
        "weight-only block tuning with lsq_optimization_setting (step 'lsq'; power-of-two scales are not "
        "trained, as in ESP-PPQ: a warning says so)",
    ),
    **_part(
        "lsq_optimization", "interested_layers lr collecting_device steps is_scale_trainable gamma block_size"
    ),
    "tqt_optimization": FieldSupport(
        IMPLEMENTED, "TQT per block with tqt_optimization_setting (step 'tqt', espq.quant.finetune)"
    ),
    **_part(
        "tqt_optimization",
        "interested_layers lr collecting_device steps is_scale_trainable gamma block_size int_lambda",
    ),
    "blockwise_reconstruction": FieldSupport(
        IMPLEMENTED,
        "AdaRound learned weight rounding per block with blockwise_reconstruction_setting "
        "(step 'blockwise_reconstruction', espq.quant.finetune.reconstruct)",
    ),
    **_part(
        "blockwise_reconstruction",
        "interested_layers is_scale_trainable lr steps gamma collecting_device block_size",
    ),
    "bias_correct": FieldSupport(
        IMPLEMENTED, "block bias correction with bias_correct_setting (espq.quant.finetune.block_bias)"
    ),
    "bias_correct_setting.interested_layers": FieldSupport(
        IMPLEMENTED, "only blocks holding these ops; [] = all", None, "bias_correct"
    ),
    "bias_correct_setting.block_size": FieldSupport(
        IMPLEMENTED, "at most this many computing ops per block", None, "bias_correct"
    ),
    "bias_correct_setting.steps": FieldSupport(
        IMPLEMENTED, "calibration batches the bias error is measured on", None, "bias_correct"
    ),
    "bias_correct_setting.collecting_device": FieldSupport(
        IMPLEMENTED,
        "'executor'/'cpu': the CPU, 'cuda': the GPU (the CPU with a warning without CUDA)",
        ("executor", "cpu", "cuda"),
        "bias_correct",
    ),
    "fusion": _fixed(f"True: {_RULE}"),
    "fusion_setting.remove_useless_quantization": _fixed(f"True: {_RULE}"),
    "fusion_setting.fuse_activation": _fixed(f"True: {_RULE}"),
    "fusion_setting.fuse_passive_op": _fixed(f"True: {_RULE}"),
    "fusion_setting.align_quantization": _fixed(f"True: {_RULE}"),
    "fusion_setting.align_avgpooling_to": _fixed(f"'None': {_RULE}", "None"),
    "fusion_setting.align_elementwise_to": _fixed(
        f"'Align to Output' (espdl_setting's value): {_RULE}", "Align to Output"
    ),
    "fusion_setting.align_concat_to": _fixed(f"'Align to Output': {_RULE}", "Align to Output"),
    "fusion_setting.align_resize_to": _fixed(f"'Align to Output': {_RULE}", "Align to Output"),
    "fusion_setting.force_alignment_overlap": _fixed(f"False (espdl_setting's value): {_RULE}", False),
    "espdl_attention_fusion": FieldSupport(
        NO_EFFECT, "Attention fusion is not implemented: MatMul-Softmax-MatMul stays decomposed either way"
    ),
    "lut_optimization": FieldSupport(
        IMPLEMENTED,
        "int16 activations exported as LUT ops (exporter int16_lut_step; False: 0, float on chip)",
    ),
    "lut_optimization_setting.step": FieldSupport(
        IMPLEMENTED,
        "table step, a power of two (ESP-PPQ rounds other values; espq asks for one)",
        _power_of_two,
        "lut_optimization",
    ),
    "lut_optimization_setting.target_ops": FieldSupport(
        MISSING,
        "the op table's LUT ops (the default list or None only)",
        lambda v: v is None or tuple(v) == LUT_TARGET_OPS,
        "lut_optimization",
    ),
    "extension": _missing("none (ESP-PPQ's placeholder for custom passes)"),
    **_part("extension", "my_first_parameter"),
    "convtranspose_decomposition": _fixed("True: ConvTranspose is rewritten as Conv"),
    "version": FieldSupport(NO_EFFECT, "ESP-PPQ's settings version string"),
    "signature": FieldSupport(NO_EFFECT, "ESP-PPQ's name string"),
    "dispatching_table.intro_0": FieldSupport(NO_EFFECT, "ESP-PPQ's help text"),
    "dispatching_table.intro_1": FieldSupport(NO_EFFECT, "ESP-PPQ's help text"),
    "dispatching_table.intro_2": FieldSupport(NO_EFFECT, "ESP-PPQ's help text"),
    "dispatching_table.attention": FieldSupport(NO_EFFECT, "ESP-PPQ's help text"),
    "dispatching_table.dispatchings": FieldSupport(
        IMPLEMENTED, "node name -> TargetPlatform (INT8/INT16/FP32); starts empty (no placeholders)"
    ),
    "recipe": FieldSupport(IMPLEMENTED, "espq only: 'espdl' or 'best'"),
    "layer_calib_algorithm": FieldSupport(IMPLEMENTED, "espq only: tensor name -> observer"),
}


def get_field(setting: Any, path: str) -> Any:
    """The value at dotted ``path`` of ``setting``."""
    value = setting
    for part in path.split("."):
        value = getattr(value, part)
    return value


def unsupported(setting: Any) -> list[str]:
    """One line per field of ``setting`` whose value espq does not implement (switch on)."""
    problems = []
    for path, rule in FIELDS.items():
        if rule.switch is not None and not get_field(setting, rule.switch):
            continue
        value = get_field(setting, path)
        if not rule.works(value):
            shown = value.name if isinstance(value, Enum) else repr(value)
            problems.append(
                f"espq does not implement {path}={shown}; the nearest espq feature is {rule.note}"
            )
    return problems


def check_setting(setting: Any) -> None:
    """Raise one :class:`ConfigError` listing every switched-on field espq does not implement."""
    problems = unsupported(setting)
    if not problems:
        return
    lines = "\n".join(f"  - {p}" for p in problems)
    hint = ""
    if any(p.split("=")[0].split()[-1] in ESPDL_FIELDS for p in problems):
        hint = "\nQuantizationSettingFactory.espdl_setting() gives ESP-PPQ's ESP-DL values of these fields."
    raise ConfigError(f"{len(problems)} setting field(s) espq does not implement:\n{lines}{hint}")
