"""ESP-PPQ's ``TargetPlatform`` values and ``get_target_platform`` (esp_ppq_facts.md §1.4)."""

from __future__ import annotations

from enum import IntEnum

from espq.errors import ConfigError
from espq.targets import get_target


class TargetPlatform(IntEnum):
    """The platform enum ESP-PPQ scripts pass to ``dispatching_table.append`` (same values)."""

    FP32 = 0
    ESPDL_INT8 = 551
    ESPDL_INT16 = 552
    ESPDL_S3_INT8 = 553
    ESPDL_S3_INT16 = 554
    ESPDL_H_PRE_INT16 = 555
    ESPDL_S3_H_PRE_INT16 = 556
    ESPDL_C_INT8 = 557
    ESPDL_C_INT16 = 558
    ESPDL_C_H_PRE_INT16 = 559

    @property
    def bits(self) -> int | None:
        """8 or 16 for quantized platforms, None for FP32."""
        if self is TargetPlatform.FP32:
            return None
        return 8 if self.name.endswith("INT8") else 16


def get_target_platform(target: str, num_of_bits: int = 8, float: bool = False, **kwargs) -> TargetPlatform:
    """The platform for ``target`` at ``num_of_bits`` (``hi_precision=True`` picks the H_PRE int16 one).

    Unlike ESP-PPQ, an unknown target or a bit width other than 8/16 is an error, not a silent FP32
    fallback: a typo must not produce an unquantized model.
    """
    unknown = set(kwargs) - {"hi_precision"}
    if unknown:
        raise ConfigError(f"get_target_platform got unknown argument(s) {sorted(unknown)}")
    if float:
        return TargetPlatform.FP32
    tgt = get_target(target)
    if num_of_bits not in (8, 16) or isinstance(num_of_bits, bool):
        raise ConfigError(f"num_of_bits must be 8 or 16 (ESP-DL runs int8 and int16), got {num_of_bits!r}")
    if num_of_bits == 16 and kwargs.get("hi_precision"):
        return TargetPlatform[tgt.ppq_hi_precision_platform]
    return TargetPlatform[tgt.ppq_platforms[num_of_bits]]


def platform_precision(platform: TargetPlatform | int) -> int | str:
    """espq precision override (8, 16 or "float") of an ESP-PPQ platform value."""
    try:
        p = TargetPlatform(int(platform))
    except ValueError:
        raise ConfigError(
            f"unknown TargetPlatform value {platform!r}; use get_target_platform(target, bits)"
        ) from None
    return "float" if p.bits is None else p.bits
