"""ESP32-S3 (PIE v1): round half up, per-tensor weights, 20-bit int8 accumulators and biases.

Facts: esp_dl §4 table, §4.1-§4.3; esp_ppq §1.4 and §2.1 (ESPDL_S3_INT8 / ESPDL_S3_INT16).
"""

from __future__ import annotations

from espq.targets.base import Rounding, Target, frozen_map
from espq.targets.ops_table import OP_TABLE

ESP32S3 = Target(
    name="esp32s3",
    family="s3",
    metadata_name="esp32s3",
    description="ESP32-S3 (Xtensa LX7, PIE v1)",
    aliases=("s3", "esp32-s3"),
    rounding=Rounding.HALF_UP,  # explicit half-up rounding in the tie728 kernels (§4.1)
    lut_index_tie=Rounding.HALF_UP,  # §3.3
    per_channel_weights=False,  # S3 kernels dereference a null pointer for per-channel shifts (§4.2)
    per_channel_ops=frozenset(),
    bias_bits=frozen_map({8: 20, 16: 40}),  # int8 bias repacked to its low 20 bits at run time (§4.3)
    bias_storage_bits=frozen_map({8: 32, 16: 64}),  # the file still stores INT32 / INT64 (§2.4)
    accumulator_bits=frozen_map({8: 20, 16: 40}),  # QACC lanes saturate at every MAC (§4.2)
    leftover_accumulator_bits=frozen_map({8: 40}),  # ACCX for leftover output channels (§4.2)
    accumulator_saturates=True,
    weight_layout="blocked",  # same byte order as P4 (§2.5)
    weight_block=frozen_map({8: 16, 16: 8}),
    mul_rescale_in_float=False,  # integer multiply + explicit half-up shift (§4.5)
    ppq_platforms=frozen_map({8: "ESPDL_S3_INT8", 16: "ESPDL_S3_INT16"}),
    ppq_hi_precision_platform="ESPDL_S3_H_PRE_INT16",
    narrowing_wraps=False,
    fused_prelu_as_relu_bits=frozenset({8}),
    prelu_int8_rescales=True,
    ops=OP_TABLE,
    rnn_dotprod_simd=frozen_map({8: 16, 16: 8}),  # dl_tie728_dotprod_i8k8o16 / i16k16o16
)
