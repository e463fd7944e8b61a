"""Chips without PIE (ESP32, ESP32-S2, ESP32-C2/C3/C5/C6): ESP-DL's plain C kernels, target "c".

All behave like the op-test target ``c`` (esp_dl §4.1: the classic ESP32 has no PIE and runs the C
kernels; op-test "c" models run on an ESP32 board). Facts: esp_dl §4 table; esp_ppq §1.4, §2.1
(ESPDL_C_INT8 / ESPDL_C_INT16). Files for these chips carry ``metadata_props["target"] = "c"`` (§2.7).
"""

from __future__ import annotations

from espq.targets.base import Rounding, Target, frozen_map
from espq.targets.ops_table import OP_TABLE

_CHIPS = {
    "c": ("Generic C kernels (any chip without PIE)", ()),
    "esp32": ("ESP32 (Xtensa LX6, no PIE)", ()),
    "esp32s2": ("ESP32-S2 (Xtensa LX7, no PIE)", ("s2", "esp32-s2")),
    "esp32c2": ("ESP32-C2 (RISC-V, no PIE)", ("c2", "esp32-c2")),
    "esp32c3": ("ESP32-C3 (RISC-V, no PIE)", ("c3", "esp32-c3")),
    "esp32c5": ("ESP32-C5 (RISC-V, no PIE)", ("c5", "esp32-c5")),
    "esp32c6": ("ESP32-C6 (RISC-V, no PIE)", ("c6", "esp32-c6")),
}


def c_target(name: str) -> Target:
    """The C-kernel record for chip ``name`` (one of ``C_CHIPS``)."""
    description, aliases = _CHIPS[name]
    return Target(
        name=name,
        family="c",
        metadata_name="c",
        description=description,
        aliases=aliases,
        rounding=Rounding.HALF_UP,  # tool::round = floor(x + 0.5) (§4.1)
        lut_index_tie=Rounding.HALF_UP,  # §3.3
        per_channel_weights=False,  # the C per-channel branch reads an unset field (§4.2)
        per_channel_ops=frozenset(),
        bias_bits=frozen_map({8: 32, 16: 64}),  # esp_ppq §2.1
        bias_storage_bits=frozen_map({8: 32, 16: 64}),
        accumulator_bits=frozen_map({8: 32, 16: 64}),  # plain int32 / int64 C arithmetic, wraps (§4.2)
        leftover_accumulator_bits=frozen_map({}),
        accumulator_saturates=False,
        weight_layout="plain",  # OHWI (regular) / HWCN (depthwise) (§2.5)
        weight_block=frozen_map({}),
        mul_rescale_in_float=True,  # int product -> float32 * 2^(e_a+e_b-e_out) -> tool::round (§4.5)
        ppq_platforms=frozen_map({8: "ESPDL_C_INT8", 16: "ESPDL_C_INT16"}),
        ppq_hi_precision_platform="ESPDL_C_H_PRE_INT16",
        narrowing_wraps=True,
        fused_prelu_as_relu_bits=frozenset(),
        prelu_int8_rescales=False,
        ops=OP_TABLE,
    )


C_CHIPS = tuple(_CHIPS)
C_TARGETS = tuple(c_target(name) for name in C_CHIPS)
