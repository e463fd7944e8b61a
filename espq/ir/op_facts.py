"""One table of chip-independent op facts: what every stage needs to know about an op type.

Per op type (ONNX / ESP-DL name) one frozen :class:`OpFacts` says

* ``layout``: how the exporter's channel-last pass (``espq.export.lower.channel_last``) and the integer
  runner's layout replay (``espq.sim.integer.layout_replay``) treat it (esp_dl_facts §2.5, esp_ppq_facts
  §3.7 step 4);
  both read the same sets from here, so they agree by construction;
* ``axes``: how an axis op's axis information is carried (remapped through the channel-last perm);
* ``quant``: the chip-independent quantization rule (esp_dl_facts §3.2, §4; esp_ppq_facts §2.5-§2.7),
  with the input roles that go with it (aligned, index, shared, weight/bias, fixed-exponent inputs);
* ``lut_bits`` / ``reads_lut_bits``: at which widths the exporter replaces the op by a look-up table, and
  at which widths the ESP-DL module reads a ``lut`` table (esp_dl_facts §3.3);
* ``buffer``: whether the ESP-DL module may write its output over a dying input (§5.1);
* ``converts``: Quantize/Dequantize/RequantizeLinear, whose input and output dtypes differ (§4.9);
* ``esp_dl``: whether ESP-DL registers the op (esp_dl_facts §3.1). Ops that ESP-DL does not register are
  listed only where espq's float side or the exporter's layout rules name them; they have a float kernel
  but no integer kernel (the capability check rejects them before export).

Data only. Queries: :func:`ops_with` (``ops_with(layout=Layout.CONV)``) and :func:`facts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from espq.ir.ops import REDUCE_OPS


class Layout(str, Enum):
    """What the channel-last rewrite does with an op (and what the runner replays)."""

    CONV = "conv"  #: activation input 0 made channel-last; outputs channel-last (NHWC / NWC)
    UNARY = "unary"  #: one activation input; outputs inherit its perm
    BROADCAST = "broadcast"  #: activations of equal rank share one perm (channel-last preferred)
    AXIS = "axis"  #: outputs inherit the perm; axis information remapped (see :class:`Axes`)
    TRANSPOSE = "transpose"  #: perm attribute composed with the input's; output in original layout
    ORIGINAL = "original"  #: inputs brought back to the ONNX layout (Transpose inserted); outputs original


class Axes(str, Enum):
    """Where an axis op keeps its axis information."""

    NONE = "none"
    ATTR = "attr"  #: attribute ``axis`` (default :attr:`OpFacts.axis_default`)
    REDUCE = "reduce"  #: attribute ``axes`` or input 1; keepdims=0 drops the reduced axes
    SLICE = "slice"  #: input 3 (axes); starts/ends stay per listed axis
    PAD = "pad"  #: input 1 (pads, begin+end per axis) or input 3 (axes)
    GATHER = "gather"  #: attribute ``axis``; a scalar index drops the axis


class Quant(str, Enum):
    """How an op's output spec relates to its inputs' (chip-independent)."""

    OBSERVED = "observed"  #: the kernel rescales: output exponent from calibration
    PASSIVE = "passive"  #: output keeps input 0's spec: data movement or max/min picks
    PASSIVE_VALUE = "passive_value"  #: as PASSIVE, but computes new values: still rounded and saturated
    ALIGN_TO_OUTPUT = "align_to_output"  #: aligned inputs carry the output's exponent (no rescaling)
    ALIGN_TO_LARGEST = "align_to_largest"  #: comparisons: inputs share the largest range; bool output
    FLOAT_OUTPUT = "float_output"  #: output is float32 even when the op runs quantized (§4.8)


class Buffer(str, Enum):
    """What the ESP-DL module does with its output buffer (esp_dl_facts §5.1)."""

    NEW = "new"  #: a fresh buffer
    INPLACE = "inplace"  #: may overwrite an input buffer that dies at the node ("changed buffer")
    VIEW = "view"  #: the output is a view of the input ("unchanged buffer")


_NONE: frozenset[int] = frozenset()


@dataclass(frozen=True)
class OpFacts:
    """Chip-independent facts of one op type (see the module docstring for each field)."""

    op_type: str
    layout: Layout
    quant: Quant
    esp_dl: bool = True
    axes: Axes = Axes.NONE
    axis_default: int = 0
    aligned_inputs: tuple[int, ...] | None = None  #: ALIGN_TO_OUTPUT: aligned input indices (None = all)
    #: ALIGN_TO_OUTPUT ops whose output range can collapse below their inputs' (``x - mean(x)``): the
    #: aligned exponent also covers the inputs' ranges when the output's would clip them (§4.4)
    covers_inputs: bool = False
    index_inputs: frozenset[int] = _NONE  #: indices/shapes, never quantized (§2.4)
    shared_inputs: frozenset[int] = _NONE  #: parameters taking the activation input's exponent (§2.5)
    weight_bias: tuple[int, int | None] | None = None  #: (weight input, bias input): bias exp = in + w
    fixed_exponent_inputs: frozenset[int] = _NONE  #: RNN inputs with the fixed 16-bit exponent (§2.5)
    #: RNN outputs with the fixed 16-bit exponent: LSTM's Y_c is the int16 cell state, whose exponent
    #: ESP-DL asserts equals ``gate_exponent`` (``dl_module_lstm.hpp``)
    fixed_exponent_outputs: frozenset[int] = _NONE
    shares_producer_spec: bool = False  #: a single-consumer producer takes this activation's spec (§2.6)
    relu_host: bool = False  #: a following single-consumer Relu is fused into it at export
    lut_bits: frozenset[int] = _NONE  #: widths at which the exporter replaces the op by a table
    reads_lut_bits: frozenset[int] = _NONE  #: widths at which the ESP-DL module reads a ``lut`` table
    buffer: Buffer = Buffer.NEW
    converts: bool = False  #: converts between float and integer codes: activation dtypes are free (§4.9)
    float_math: bool = False  #: without a table read, the ESP-DL module computes f(x) in float32 (§4.6)
    note: str = ""


L, Q, A, B = Layout, Quant, Axes, Buffer
_8, _8_16 = frozenset({8}), frozenset({8, 16})


def _f(op_type: str, layout: Layout, quant: Quant, **kw: object) -> OpFacts:
    for key in (
        "index_inputs",
        "shared_inputs",
        "fixed_exponent_inputs",
        "fixed_exponent_outputs",
        "lut_bits",
        "reads_lut_bits",
    ):
        if key in kw:
            kw[key] = frozenset(kw[key])  # type: ignore[arg-type]
    return OpFacts(op_type, layout, quant, **kw)  # type: ignore[arg-type]


def _lut(op_type: str, int16: bool, **kw: object) -> OpFacts:
    """A unary activation/math op: tabled at int8 (and at int16 when ``int16``), module reads int8 tables."""
    bits = _8_16 if int16 else _8
    return _f(op_type, L.UNARY, Q.OBSERVED, lut_bits=bits, reads_lut_bits=_8, buffer=B.INPLACE, **kw)


def _not_esp_dl(op_type: str, layout: Layout, **kw: object) -> OpFacts:
    return _f(op_type, layout, Q.OBSERVED, esp_dl=False, note="not registered by ESP-DL (§3.1)", **kw)


_ENTRIES: list[OpFacts] = [
    # conv-like: channel-last (§2.5)
    _f("Conv", L.CONV, Q.OBSERVED, weight_bias=(1, 2), relu_host=True),
    _f("AveragePool", L.CONV, Q.OBSERVED),
    _f("GlobalAveragePool", L.CONV, Q.OBSERVED),
    _f("MaxPool", L.CONV, Q.PASSIVE),
    _f("Resize", L.CONV, Q.ALIGN_TO_OUTPUT, aligned_inputs=(0,), index_inputs={1, 2, 3}),
    _f("DepthToSpace", L.CONV, Q.PASSIVE),
    _f("SpaceToDepth", L.CONV, Q.PASSIVE),
    _f("InsertZeros", L.CONV, Q.PASSIVE_VALUE),
    _f(
        "GlobalMaxPool",
        L.CONV,
        Q.PASSIVE,
        esp_dl=False,
        note="ESP-PPQ's CONV_LAYOUT_OP_SET; not registered by ESP-DL",
    ),
    # matrix products: original layout
    _f("Gemm", L.ORIGINAL, Q.OBSERVED, weight_bias=(1, 2), relu_host=True),
    _f("MatMul", L.ORIGINAL, Q.OBSERVED, weight_bias=(1, None), relu_host=True),
    # unary activations / math; int8 ones become LUTs at export (§3.3); piecewise-linear ones stay exact
    # modules at int16 rather than lossy nearest-entry tables
    _lut("Relu", False, shares_producer_spec=True),
    _lut("LeakyRelu", False, float_math=True),
    _f("PRelu", L.UNARY, Q.PASSIVE_VALUE, lut_bits=_8, reads_lut_bits=_8, buffer=B.INPLACE),
    _lut("Clip", False, shares_producer_spec=True, shared_inputs={1, 2}),
    *(
        _lut(op, True, float_math=True)
        for op in ("Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Swish", "Elu", "Exp", "Log", "Sqrt")
    ),
    _f("Gelu", L.UNARY, Q.OBSERVED, lut_bits=_8_16, reads_lut_bits=_8_16, buffer=B.INPLACE),
    _f("LUT", L.UNARY, Q.OBSERVED, reads_lut_bits=_8_16, buffer=B.INPLACE, note="written by the exporter"),
    # dl_module_neg negates the raw integers (-128 -> 127) and never rescales
    _f("Neg", L.UNARY, Q.PASSIVE_VALUE, buffer=B.INPLACE),
    _f("Identity", L.UNARY, Q.PASSIVE, buffer=B.VIEW),
    _f("QuantizeLinear", L.UNARY, Q.OBSERVED, converts=True),
    _f("DequantizeLinear", L.UNARY, Q.OBSERVED, converts=True),
    _f("RequantizeLinear", L.UNARY, Q.OBSERVED, buffer=B.INPLACE, converts=True),
    # ESP-PPQ copies the input's exponent and perm (esp_ppq_facts §8 insert_streaming_nodes)
    _f("StreamingCache", L.UNARY, Q.PASSIVE),
    *(
        _not_esp_dl(op, L.UNARY)
        for op in ("Erf", "Cast", "Softplus", "Abs", "Cos", "Sin", "Tan", "Not", "Floor", "Round", "Ceil")
        + ("Reciprocal", "Selu", "Softsign")
    ),
    # broadcasting binary ops (§4.4, §4.5, §4.11)
    _f("Add", L.BROADCAST, Q.ALIGN_TO_OUTPUT, covers_inputs=True, buffer=B.INPLACE),
    _f("Sub", L.BROADCAST, Q.ALIGN_TO_OUTPUT, covers_inputs=True, buffer=B.INPLACE),
    _f("Mul", L.BROADCAST, Q.OBSERVED, buffer=B.INPLACE),
    _f("Div", L.BROADCAST, Q.OBSERVED),
    _f("Pow", L.BROADCAST, Q.OBSERVED),
    _f("Mod", L.BROADCAST, Q.OBSERVED),
    *(
        _f(op, L.BROADCAST, Q.ALIGN_TO_LARGEST)
        for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")
    ),
    *(_not_esp_dl(op, L.BROADCAST) for op in ("And", "Or", "Xor")),
    # axis ops: the axis is remapped through the input's perm
    _f("Softmax", L.AXIS, Q.FLOAT_OUTPUT, axes=A.ATTR, axis_default=-1),
    _f("LogSoftmax", L.AXIS, Q.FLOAT_OUTPUT, axes=A.ATTR, axis_default=-1),
    _f("LpNormalization", L.AXIS, Q.OBSERVED, axes=A.ATTR, axis_default=-1),
    _f("Concat", L.AXIS, Q.ALIGN_TO_OUTPUT, axes=A.ATTR),
    _f("Split", L.AXIS, Q.PASSIVE, axes=A.ATTR, index_inputs={1}),
    *(
        _f(
            op,
            L.AXIS,
            Q.PASSIVE if op in ("ReduceMax", "ReduceMin") else Q.OBSERVED,
            axes=A.REDUCE,
            index_inputs={1},
        )
        for op in REDUCE_OPS
    ),
    _f("Slice", L.AXIS, Q.PASSIVE, axes=A.SLICE, index_inputs={1, 2, 3, 4}),
    _f("Pad", L.AXIS, Q.PASSIVE_VALUE, axes=A.PAD, index_inputs={1, 3}, shared_inputs={2}),
    _f("Gather", L.AXIS, Q.PASSIVE, axes=A.GATHER, index_inputs={1}),
    _f("Transpose", L.TRANSPOSE, Q.PASSIVE),
    # original layout: shape ops, data movement without an axis remap, normalisation, recurrent ops
    _f("Flatten", L.ORIGINAL, Q.PASSIVE, buffer=B.VIEW),
    _f("Reshape", L.ORIGINAL, Q.PASSIVE, buffer=B.VIEW, index_inputs={1}),
    _f("Squeeze", L.ORIGINAL, Q.PASSIVE, buffer=B.VIEW, index_inputs={1}),
    _f("Unsqueeze", L.ORIGINAL, Q.PASSIVE, buffer=B.VIEW, index_inputs={1}),
    _f("ReverseSequence", L.ORIGINAL, Q.PASSIVE),
    _f("ScatterND", L.ORIGINAL, Q.ALIGN_TO_OUTPUT, aligned_inputs=(0, 2), index_inputs={1}),
    _f("LayerNormalization", L.ORIGINAL, Q.OBSERVED),
    _f("RMSNormalization", L.ORIGINAL, Q.OBSERVED, index_inputs={1}),
    _f("GRU", L.ORIGINAL, Q.OBSERVED, index_inputs={4}, fixed_exponent_inputs={3}),
    _f(
        "LSTM",
        L.ORIGINAL,
        Q.OBSERVED,
        index_inputs={4},
        fixed_exponent_inputs={3, 6},
        fixed_exponent_outputs={2},
    ),
    # not ESP-DL ops, named by espq's planner before canonicalisation or by the capability check
    _f("Dropout", L.ORIGINAL, Q.PASSIVE, esp_dl=False, note="removed by canonicalisation"),
    *(_not_esp_dl(op, L.ORIGINAL, index_inputs={1}) for op in ("Expand", "Tile", "TopK")),
]

#: op_type -> OpFacts.
OP_FACTS: MappingProxyType[str, OpFacts] = MappingProxyType({f.op_type: f for f in _ENTRIES})


def facts(op_type: str) -> OpFacts | None:
    """The facts of ``op_type``, None for an op the table does not know."""
    return OP_FACTS.get(op_type)


def ops_with(**fields: object) -> frozenset[str]:
    """Op types whose facts equal every given field, e.g. ``ops_with(layout=Layout.CONV)``.

    A set-valued field (``lut_bits``, ``reads_lut_bits``) matches when it contains the given value.
    """
    for key in fields:
        if key not in OpFacts.__dataclass_fields__:
            raise TypeError(f"ops_with: OpFacts has no field {key!r}")

    def match(f: OpFacts, key: str, want: object) -> bool:
        have = getattr(f, key)
        return want in have if key in ("lut_bits", "reads_lut_bits") else have == want

    return frozenset(op for op, f in OP_FACTS.items() if all(match(f, k, v) for k, v in fields.items()))


#: conv-like ops: channel-last inputs and outputs (exporter and runner).
CONV_LAYOUT_OPS = ops_with(layout=Layout.CONV)
#: ops whose outputs inherit their activation input's perm (the runner's replay of UNARY/BROADCAST/AXIS).
INHERIT_LAYOUT_OPS = (
    ops_with(layout=Layout.UNARY) | ops_with(layout=Layout.BROADCAST) | ops_with(layout=Layout.AXIS)
)
#: ESP-PPQ's computing ops (esp_ppq_facts §5.2): the weighted ops that error analysis, mixed precision and
#: fine-tuning walk. ConvTranspose is named for graphs the loader has not yet rewritten into Conv.
COMPUTING_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU"})
