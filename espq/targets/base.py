"""The records that describe a chip family: :class:`Target`, :class:`OpSpec` and the rule types.

A target is data (STYLE.md "Target as data"): code asks the record (``target.bias_bits[8]``) and never
compares target names. The per-chip values live in :mod:`espq.targets.esp32p4`,
:mod:`espq.targets.esp32s3` and :mod:`espq.targets.c`; the op table in :mod:`espq.targets.ops_table`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from espq.ir.graph import Graph, Node


class Rounding(str, Enum):
    """Rounding of ties (facts esp_dl §4.1)."""

    HALF_EVEN = "half_even"  # ESP32-P4 / S31: round half to even
    HALF_UP = "half_up"  # ESP32-S3 and C chips: ties toward +inf (floor(x + 0.5)); -2.5 -> -2


class QuantType(str, Enum):
    """The ``quant_type`` attribute values espq writes (facts esp_dl §2.2)."""

    S8 = "S8"
    S16 = "S16"
    F32 = "F32"

    @classmethod
    def from_bits(cls, bits: int) -> QuantType:
        """``8 -> S8``, ``16 -> S16``."""
        return {8: cls.S8, 16: cls.S16}[bits]


class ExponentRule(str, Enum):
    """How an op's integer kernel relates the exponents of its activations (facts esp_dl §3.2, §4.4-§4.11).

    * ``EQUAL``: every quantized activation input and output must share one exponent (no rescale inside
      the kernel: Add/Sub, Concat, MaxPool, data movement...). The planner must align them.
    * ``EQUAL_INPUTS``: the activation inputs must share one exponent; the output is not a quantized tensor
      (comparisons write bool).
    * ``FREE``: the kernel rescales; every tensor may have its own exponent.
    """

    EQUAL = "equal"
    EQUAL_INPUTS = "equal_inputs"
    FREE = "free"


@dataclass(frozen=True)
class Issue:
    """Why a node cannot run on the target, and how to fix it."""

    reason: str
    fix: str


# A constraint rule looks at one node of a canonicalised graph and returns ``None`` (fine) or an Issue.
Rule = Callable[["Node", "Graph"], "Issue | None"]


@dataclass(frozen=True)
class OpSpec:
    """What ESP-DL's runtime accepts for one registered ``op_type``.

    ``quant_types``: the node ``quant_type`` values the module accepts (facts esp_dl §3.2 "dtypes").
    ``default_float``: espq keeps the op in float unless the user overrides it (ESP-PPQ leaves it out of
    ``quant_operation_types``, esp_ppq §2.2). ``float_output``: the output is float32 even when the op is
    quantized (Softmax/LogSoftmax, §4.8). ``bool_output``: the output is bool (comparisons).
    ``param_inputs``: input indices that must be initializers when present. ``rules``: attribute
    constraints. ``notes``: informational remarks shown in reports, keyed by family, quant type value
    (``"S16"``) or ``"*"`` (always).
    """

    op_type: str
    quant_types: frozenset[QuantType]
    exponent_rule: ExponentRule = ExponentRule.FREE
    nonnegative_shift: bool = False
    default_float: bool = False
    float_output: bool = False
    bool_output: bool = False
    param_inputs: tuple[int, ...] = ()
    rules: tuple[Rule, ...] = ()
    notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def notes_for(self, family: str, quant_type: QuantType | None) -> tuple[str, ...]:
        """Notes that apply on ``family`` at ``quant_type`` (keys: family, quant type, ``"*"``)."""
        keys = ("*", family) + ((quant_type.value,) if quant_type is not None else ())
        return tuple(self.notes[k] for k in keys if k in self.notes)


@dataclass(frozen=True)
class Target:
    """One chip family's arithmetic, layout and op support (facts esp_dl §4 table, esp_ppq §2.1).

    Fields:
        name: the chip this record is for (``"esp32p4"``, ``"esp32c3"``...).
        family: ``"p4"`` (PIE v2: P4, S31), ``"s3"`` (PIE v1) or ``"c"`` (no PIE: plain C kernels).
        metadata_name: value of the file's ``metadata_props["target"]`` (``esp32p4``, ``esp32s3``, ``c``...).
        aliases: other spellings accepted by :func:`espq.targets.get_target`.
        rounding: rounding of right shifts and of float->int conversion (``tool::round``).
        lut_index_tie: rounding of the int16 LUT index on ties (§3.3).
        per_channel_weights: whether Conv/Gemm weights (and their biases) may carry one exponent per
            output channel; ``per_channel_ops`` lists those op types (§4.2).
        bias_bits: bias range in bits per activation width (ESP-PPQ ``_PLATFORM_CONFIGS``; S3 int8 bias is
            truncated to 20 bits at run time, §4.3).
        bias_storage_bits: the bias dtype written to the file (INT32 for S8, INT64 for S16, §2.4).
        accumulator_bits: conv/gemm accumulator width for the main (aligned) kernels.
        leftover_accumulator_bits: accumulator width used for the N mod block leftover output channels,
            where the facts give one (§4.2); otherwise ``accumulator_bits`` applies.
        accumulator_saturates: ``True`` when accumulator lanes saturate (PIE), ``False`` when plain C
            arithmetic wraps.
        weight_layout: ``"blocked"`` ((N/16)HWC16 / (N/8)HWC8) or ``"plain"`` (OHWI / HWCN) (§2.5).
        weight_block: output-channel block size per bit width for the blocked layout.
        mul_rescale_in_float: Mul converts the integer product to float32 and multiplies by
            2^(e_a+e_b-e_out) before ``tool::round`` (C kernels, §4.5) instead of an integer shift.
        ppq_platforms: ESP-PPQ ``TargetPlatform`` names per bit width (``.json`` dispatchings, esp_ppq §1.4).
        ppq_hi_precision_platform: ESP-PPQ's ``H_PRE`` int16 platform name (``hi_precision=True``).
        narrowing_wraps: kernels that cast a computed integer to int8/int16 without ``tool::saturate``
            (Resize) wrap on overflow (plain C casts) instead of saturating (PIE).
        fused_prelu_as_relu_bits: bit widths whose Conv kernels select the ReLU epilogue with an unset (zero)
            alpha when a LeakyRelu/PRelu is fused (S3 int8, §4.2); elsewhere such a fusion has no kernel.
        prelu_int8_rescales: the int8 PRelu kernel rescales its positive side to the output exponent (PIE
            kernels; Espressif's S3 face detector has e_in 2 -> e_out 1) instead of copying it (C, §4.6).
        ops: the op support table (op_type -> OpSpec).
        rnn_dotprod_simd: GRU/LSTM ``base::dotprod`` per activation width: the row length that must
            divide a W / R row for the PIE kernel (exact integer sum, shift rounded with ``rounding``,
            saturated to int16; ``dl_base_dotprod.cpp``); other rows, and chips without an entry, take
            the C path (``round(float32(sum) · 2^-shift)``).
    """

    name: str
    family: str
    metadata_name: str
    description: str
    aliases: tuple[str, ...]
    rounding: Rounding
    lut_index_tie: Rounding
    per_channel_weights: bool
    per_channel_ops: frozenset[str]
    bias_bits: Mapping[int, int]
    bias_storage_bits: Mapping[int, int]
    accumulator_bits: Mapping[int, int]
    leftover_accumulator_bits: Mapping[int, int]
    accumulator_saturates: bool
    weight_layout: str
    weight_block: Mapping[int, int]
    mul_rescale_in_float: bool
    ppq_platforms: Mapping[int, str]
    ppq_hi_precision_platform: str
    narrowing_wraps: bool
    fused_prelu_as_relu_bits: frozenset[int]
    prelu_int8_rescales: bool
    ops: Mapping[str, OpSpec]
    rnn_dotprod_simd: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))

    def __hash__(self) -> int:
        return hash(self.name)

    def supports(self, op_type: str, quant_type: QuantType | str) -> bool:
        """Whether ESP-DL runs ``op_type`` with ``quant_type`` (``"S8"``/``"S16"``/``"F32"``) here."""
        spec = self.ops.get(op_type)
        return spec is not None and QuantType(quant_type) in spec.quant_types

    def is_per_channel(self, op_type: str) -> bool:
        """Whether ``op_type``'s weight is quantized per output channel on this target."""
        return self.per_channel_weights and op_type in self.per_channel_ops

    def accumulator_bits_for(self, bits: int, leftover: bool = False) -> int:
        """Accumulator width of a ``bits``-bit conv/gemm; ``leftover`` for the N mod block channels."""
        if leftover and bits in self.leftover_accumulator_bits:
            return self.leftover_accumulator_bits[bits]
        return self.accumulator_bits[bits]

    def weight_layout_tag(self, bits: int, n_out: int, depthwise: bool, spatial_dims: int = 2) -> str:
        """The ``layout ==> ...`` name of a conv/gemm weight (esp_dl §2.5, esp_ppq §4.6).

        Blocked: ``(N/16)HWC16`` (int8) / ``(N/8)HWC8`` (int16), ``_UNALIGNED`` when ``n_out`` is not a
        multiple of the block; plain: ``NHWC`` (regular) / ``HWCN`` (depthwise). ``spatial_dims=1`` drops H.
        """
        hw = "HW" if spatial_dims == 2 else "W"
        if self.weight_layout == "blocked":
            a = self.weight_block[bits]
            return f"(N/{a}){hw}C{a}" + ("_UNALIGNED" if n_out % a else "")
        return f"{hw}CN" if depthwise else f"N{hw}C"

    def bias_range(self, bits: int) -> tuple[int, int]:
        """Inclusive integer range of a ``bits``-bit op's bias: [-2^(b-1), 2^(b-1)-1] (esp_ppq §2.1)."""
        b = self.bias_bits[bits]
        return -(1 << (b - 1)), (1 << (b - 1)) - 1

    def __repr__(self) -> str:
        return f"Target({self.name!r}, family={self.family!r}, rounding={self.rounding.value})"


def frozen_map(d: Mapping) -> Mapping:
    """A read-only copy of ``d`` for use in the frozen records."""
    return MappingProxyType(dict(d))
