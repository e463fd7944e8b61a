"""ESP-DL's op support as data: one :class:`OpSpec` per registered op type, plus fixes for the rest.

Sources: the 71 registered op types (esp_dl §3.1), their dtypes/params/constraints (§3.2), exponent
handling (§4.4-§4.11) and which ops ESP-PPQ quantizes by default (esp_ppq §2.2).
"""

from __future__ import annotations

from types import MappingProxyType

from espq.ir.ops import REDUCE_OPS
from espq.targets import rules as r
from espq.targets.base import ExponentRule, OpSpec, QuantType

S8, S16, F32 = QuantType.S8, QuantType.S16, QuantType.F32
_INT = frozenset({S8, S16})
_ALL = frozenset({S8, S16, F32})
EQ, EQ_IN = ExponentRule.EQUAL, ExponentRule.EQUAL_INPUTS

#: GRU/LSTM arithmetic (espq.sim.integer.rnn_arith) comes from ESP-DL's module source only.
_RNN_NOTE = MappingProxyType(
    {
        "*": "no op-test files exist for this op: the integer gate arithmetic follows ESP-DL's module "
        "source (dl_module_gru/lstm.hpp, dl_base_dotprod.cpp) and is not verified on a chip; whether the "
        "compiler fuses its float32 multiply-adds is not known"
    }
)
_NOT_ON_C = MappingProxyType(
    {
        "c": "Espressif's op tests do not run this op on C chips (op_cfg.toml restricts it to "
        "esp32s3/esp32p4, esp_dl §6.2); it is not verified on the chip"
    }
)


def _spec(op_type: str, quant_types: frozenset[QuantType], **kw: object) -> OpSpec:
    notes = kw.pop("notes", None)
    return OpSpec(op_type, quant_types, notes=MappingProxyType(dict(notes or {})), **kw)  # type: ignore[arg-type]


_CONV_RULES = (r.conv_rank, r.conv_group, r.explicit_pads, r.fused_activation)
_POOL_RULES = (r.pool_rank, r.explicit_pads, r.pool_ceil_mode)
_SOFTMAX_NOTE = {"*": "output is float32 (esp_dl §4.8); a following quantized op gets a QuantizeLinear"}

_SPECS: list[OpSpec] = [
    # compute ops: integer only; shift = e_out - e_in - e_w must be >= 0 (esp_dl §3.2 exporter note)
    _spec("Conv", _INT, nonnegative_shift=True, param_inputs=(1, 2), rules=_CONV_RULES, notes=_NOT_ON_C),
    _spec(
        "Gemm",
        _INT,
        nonnegative_shift=True,
        param_inputs=(1, 2),
        rules=(r.gemm_trans_a, r.gemm_alpha_beta, r.gemm_bias_shape, r.fused_activation),
    ),
    _spec("MatMul", _INT, nonnegative_shift=True, rules=(r.matmul_rank, r.fused_activation)),
    # elementwise arithmetic (§4.4, §4.5, §4.11)
    _spec("Add", _ALL, exponent_rule=EQ),
    _spec("Sub", _ALL, exponent_rule=EQ),
    _spec("Mul", _ALL, nonnegative_shift=True),
    _spec("Div", _ALL),
    _spec("Pow", _ALL, default_float=True),
    _spec("Mod", _ALL, notes=_NOT_ON_C),
    *(
        _spec(op, _INT, exponent_rule=EQ_IN, bool_output=True)
        for op in ("Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual")
    ),
    # pooling / resize / concat (§4.7, §4.10)
    _spec("Concat", _ALL, exponent_rule=EQ),
    _spec("AveragePool", _ALL, rules=(*_POOL_RULES, r.avgpool_count_include_pad)),
    _spec("GlobalAveragePool", _ALL),
    _spec("MaxPool", _INT, exponent_rule=EQ, rules=(*_POOL_RULES, r.pool_dilations)),
    _spec(
        "Resize",
        _INT,
        exponent_rule=EQ,
        param_inputs=(2, 3),
        rules=(r.resize_mode, r.resize_rank),
        notes={
            "S16": "int16 Resize: ESP-DL's operator_support_state.md lists it as unsupported although the "
            "module accepts S16; Espressif's op tests cover int8 only (esp_dl §3.1, §6.2)"
        },
    ),
    # activations / math (§4.6); int8 ones become LUTs at export (§3.3)
    *(
        _spec(op, _ALL)
        for op in (
            "Relu",
            "LeakyRelu",
            "Sigmoid",
            "Tanh",
            "HardSigmoid",
            "HardSwish",
            "Swish",
            "Elu",
            "Exp",
        )
    ),
    # ``dl_module_neg.hpp`` negates the raw integers (−128 → 127) and never rescales: e_out = e_in
    _spec("Neg", _ALL, exponent_rule=EQ),
    _spec("Clip", _ALL, param_inputs=(1, 2)),
    # the non-LUT (int16) PRelu kernel copies positive values unchanged: e_out must equal e_in (§4.6)
    _spec("PRelu", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("Log", _ALL, default_float=True),
    _spec("Sqrt", _ALL, default_float=True),
    _spec("Gelu", _INT),
    _spec("LUT", _INT, rules=(r.exporter_only,)),
    _spec("Softmax", _ALL, float_output=True, notes=_SOFTMAX_NOTE),
    _spec("LogSoftmax", _ALL, float_output=True, notes=_SOFTMAX_NOTE),
    *(
        _spec(op, _ALL, rules=(r.exporter_only,))
        for op in ("QuantizeLinear", "DequantizeLinear", "RequantizeLinear")
    ),
    # data movement: exponent unchanged (§4.10)
    _spec("Flatten", _ALL, exponent_rule=EQ),
    _spec("Reshape", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("Squeeze", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("Unsqueeze", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("Transpose", _ALL, exponent_rule=EQ),
    _spec("Slice", _ALL, exponent_rule=EQ, param_inputs=(1, 2, 3, 4)),
    _spec("Pad", _ALL, exponent_rule=EQ, param_inputs=(1, 2), rules=(r.pad_mode,)),
    _spec("Split", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("Gather", _ALL, exponent_rule=EQ, param_inputs=(1,)),
    _spec("SpaceToDepth", _ALL, exponent_rule=EQ),
    _spec("DepthToSpace", _ALL, exponent_rule=EQ),
    _spec("ReverseSequence", _INT, exponent_rule=EQ),
    _spec("ScatterND", _ALL, exponent_rule=EQ),
    _spec("Identity", _ALL, exponent_rule=EQ),
    _spec("StreamingCache", _ALL, exponent_rule=EQ),
    _spec("InsertZeros", _ALL, exponent_rule=EQ),
    # reductions (§4.11); §3.2 says "<= 4-D" but Espressif's op tests include 5-D cases, so no rank rule
    *(
        _spec(
            op,
            _ALL,
            exponent_rule=EQ if op in ("ReduceMax", "ReduceMin") else ExponentRule.FREE,
            param_inputs=(1,),
        )
        for op in REDUCE_OPS
    ),
    # normalisation and recurrent ops (float internals)
    _spec("LayerNormalization", _ALL, param_inputs=(1, 2), notes=_NOT_ON_C),
    _spec("RMSNormalization", _ALL, param_inputs=(1,), notes=_NOT_ON_C),
    _spec("LpNormalization", _ALL, notes=_NOT_ON_C),
    _spec("GRU", _ALL, param_inputs=(1, 2, 3), rules=(r.gru_linear_before_reset,), notes=_RNN_NOTE),
    _spec("LSTM", _ALL, param_inputs=(1, 2, 3, 6), notes=_RNN_NOTE),
]

#: op_type -> OpSpec for every op type ESP-DL registers (esp_dl §3.1: 71 strings).
OP_TABLE: MappingProxyType[str, OpSpec] = MappingProxyType({s.op_type: s for s in _SPECS})

#: Ops whose kernels do not rescale: quantized activation inputs and outputs share one exponent.
EQUAL_EXPONENT_OPS = frozenset(op for op, s in OP_TABLE.items() if s.exponent_rule is ExponentRule.EQUAL)
#: Ops whose shift e_out - e_in - e_w (e_out - e_a - e_b) must be >= 0 (esp_ppq §2.4 "Checks on exponents").
NONNEGATIVE_SHIFT_OPS = frozenset(op for op, s in OP_TABLE.items() if s.nonnegative_shift)

#: Ops that espq's canonicalisation rewrites; if one is still present the graph was not canonicalised.
CANONICALISED_AWAY = MappingProxyType(
    {
        "ConvTranspose": "is lowered to InsertZeros + Conv by canonicalisation (esp_dl §3.1)",
        "BatchNormalization": "is folded into the previous Conv (or a 1x1 depthwise Conv) by canonicalising",
        "Dropout": "is removed by canonicalisation",
        "Constant": "becomes an initializer in canonicalisation",
    }
)

#: Fix suggestions for common ops that ESP-DL does not register (esp_dl §3.1: Max/Min/And/Or/Xor/Not
#: have module headers but are not registered; the rest have no module at all).
UNSUPPORTED_FIXES = MappingProxyType(
    {
        "Max": (
            "a constant holding one value becomes Clip automatically; a per-element constant or two "
            "tensors: rewrite as Relu(a - b) + b"
        ),
        "Min": (
            "a constant holding one value becomes Clip automatically; a per-element constant or two "
            "tensors: rewrite as a - Relu(a - b)"
        ),
        "And": "move the boolean logic to the host, or express it with Mul on 0/1 tensors",
        "Or": "move the boolean logic to the host, or express it with Add + Clip on 0/1 tensors",
        "Xor": "move the boolean logic to the host",
        "Not": "move the boolean logic to the host, or compute 1 - x on 0/1 tensors",
        "GlobalMaxPool": "replace it with ReduceMax over the spatial axes (keepdims=1) or a full MaxPool",
        "Erf": "express the GELU pattern x*0.5*(1+Erf(x/sqrt(2))) as a Gelu node",
        "Upsample": "re-export with opset >= 11 so that it becomes Resize",
        "Reciprocal": "replace it with Div(1, x)",
        "Softplus": "replace it with Log(1 + Exp(x)) or a supported activation",
        "Abs": "replace it, e.g. Relu(x) + Relu(-x)",
        "Sum": "replace it with a chain of Add nodes",
        "Einsum": "rewrite it with MatMul/Transpose/Reshape",
        "InstanceNormalization": "replace it with LayerNormalization over the spatial axes",
        "GroupNormalization": "replace it with Reshape + LayerNormalization + Reshape",
        "ArgMax": "end the model before it and compute argmax on the host",
        "ArgMin": "end the model before it and compute argmin on the host",
        "TopK": "end the model before it and compute top-k on the host",
        "NonMaxSuppression": "end the model before it and run NMS on the host",
        "GatherElements": "rewrite it with Gather/Slice, or move it to the host",
        "GatherND": "rewrite it with Gather/Slice, or move it to the host",
        "Tile": "replace it with Concat, or rely on broadcasting in Add/Mul",
        "Expand": "rely on broadcasting in the consuming Add/Mul, or replace it with Concat",
        "Where": "replace it with arithmetic on 0/1 masks (Mul/Add), or move it to the host",
        "If": "control flow is not supported; unroll or specialise the model",
        "Loop": "control flow is not supported; unroll the loop",
        "Scan": "control flow is not supported; unroll the loop",
    }
)

#: Ops whose output depends only on tensor shapes (their consumers can be constant-folded).
SHAPE_OPS = frozenset({"Shape", "Size"})

GENERIC_FIX = (
    "not an ESP-DL operator (see espq.targets.supported_ops_markdown()); replace it with supported ops, "
    "or end the model before it and run it on the host"
)
CONSTANT_FOLD_FIX = (
    "constant-fold it: it depends only on shapes and constants (fix the input shape and run "
    "espq.load(...) or onnxslim)"
)
CANONICALISE_FIX = "run espq.load(...), which canonicalises the model, and check the canonicalised graph"
