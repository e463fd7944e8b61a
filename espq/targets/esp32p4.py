"""ESP32-P4 and ESP32-S31 (PIE v2): round half to even, per-channel Conv/Gemm weights.

Facts: esp_dl §4 table and §4.1-§4.3; esp_ppq §1.4 and §2.1 (ESPDL_INT8 / ESPDL_INT16).
"""

from __future__ import annotations

from espq.targets.base import Rounding, Target, frozen_map
from espq.targets.ops_table import OP_TABLE


def pie_v2_target(name: str, description: str, aliases: tuple[str, ...]) -> Target:
    """The record shared by the PIE v2 chips; only the name (and so the metadata target) differs."""
    return Target(
        name=name,
        family="p4",
        metadata_name=name,
        description=description,
        aliases=aliases,
        rounding=Rounding.HALF_EVEN,  # CONFIG_ROUND_HALF_EVEN_ENABLED, vxrm = half even (§4.1)
        lut_index_tie=Rounding.HALF_EVEN,  # §3.3
        per_channel_weights=True,  # per-channel shift vector kernels (§4.2)
        per_channel_ops=frozenset({"Conv", "Gemm"}),  # ConvTranspose is lowered to Conv first
        bias_bits=frozen_map({8: 32, 16: 40}),  # esp_ppq §2.1
        bias_storage_bits=frozen_map({8: 32, 16: 64}),  # INT32 / INT64 (§2.4)
        accumulator_bits=frozen_map({8: 32, 16: 64}),  # QACC lanes, saturating (§4.2)
        leftover_accumulator_bits=frozen_map({8: 40}),  # XACC for N mod 16 leftovers (§4.2)
        accumulator_saturates=True,
        weight_layout="blocked",  # (N/16)HWC16 / (N/8)HWC8 (§2.5)
        weight_block=frozen_map({8: 16, 16: 8}),
        mul_rescale_in_float=False,  # integer multiply + rounding shift (§4.5)
        ppq_platforms=frozen_map({8: "ESPDL_INT8", 16: "ESPDL_INT16"}),
        ppq_hi_precision_platform="ESPDL_H_PRE_INT16",
        narrowing_wraps=False,
        fused_prelu_as_relu_bits=frozenset(),
        prelu_int8_rescales=True,
        ops=OP_TABLE,
        rnn_dotprod_simd=frozen_map({8: 16, 16: 8}),  # dl_esp32p4_dotprod_i8k8o16 / i16k16o16
    )


ESP32P4 = pie_v2_target("esp32p4", "ESP32-P4 (RISC-V, PIE v2)", ("p4", "esp32-p4"))
ESP32S31 = pie_v2_target("esp32s31", "ESP32-S31 (PIE v2, same arithmetic as ESP32-P4)", ("s31", "esp32-s31"))
