"""How each op type's tensors are quantized: which specs are shared, aligned, derived or left float.

These are properties of ESP-DL's kernels (esp_dl_facts.md §3.2, §4) and of ESP-PPQ's pipeline
(esp_ppq_facts.md §2.5–§2.7); they do not depend on the chip, so they live here, not in ``targets``.
"""

from __future__ import annotations

from espq.ir.ops import REDUCE_OPS

#: Ops whose outputs keep input 0's spec: pure data movement (esp_dl_facts §4.10) or max/min picks
#: (MaxPool, ReduceMax/Min need equal exponents, §3.2). ESP-PPQ's PASSIVE_OPERATIONS (§2.3) + ESP-DL movers,
#: plus every other op the op table marks as not rescaling (``EQUAL_EXPONENT_OPS``: Neg, PRelu) and
#: that is not aligned to its output (``ALIGN_TO_OUTPUT``).
PASSIVE_OPS = frozenset(
    {
        "MaxPool",
        "GlobalMaxPool",
        "Reshape",
        "Flatten",
        "Identity",
        "Dropout",
        "Slice",
        "Pad",
        "Split",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Gather",
        "ReverseSequence",
        "ReduceMax",
        "ReduceMin",
        "DepthToSpace",
        "SpaceToDepth",
        "StreamingCache",
        "InsertZeros",
        "Neg",
        "PRelu",
    }
)

#: Passive ops that compute new values (padding, negation, a slope) rather than move them: their
#: outputs are still rounded and saturated (Neg(−128) = 127, PRelu's floored negative side).
PASSIVE_VALUE_OPS = frozenset({"Pad", "InsertZeros", "Neg", "PRelu"})

#: Ops whose activation inputs must carry the output's exponent (the kernel does no rescaling):
#: Add/Sub (§4.4), Concat (§4.10); Resize is aligned the same way by ESP-PPQ ('Align to Output').
#: Value: which input indices are aligned (None = all).
ALIGN_TO_OUTPUT: dict[str, tuple[int, ...] | None] = {
    "Add": None,
    "Sub": None,
    "Concat": None,
    "ScatterND": (0, 2),
    "Resize": (0,),
}

#: Comparisons compare raw integers: all inputs share one exponent chosen from the largest range.
ALIGN_TO_LARGEST = frozenset({"Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"})

#: Ops with integer (bool) outputs that carry no exponent.
BOOL_OUTPUT_OPS = ALIGN_TO_LARGEST

#: Ops whose output is float32 even when the op runs quantized (esp_dl_facts §4.8).
FLOAT_OUTPUT_OPS = frozenset({"Softmax", "LogSoftmax"})

#: Activations whose single-consumer producer shares their output spec (esp_ppq_facts.md §2.6).
ACTIVATIONS_SHARING_INPUT = frozenset({"Relu", "Clip"})

#: Conv-like ops a following single-consumer Relu is fused into at export (activation="Relu").
RELU_FUSION_HOSTS = frozenset({"Conv", "Gemm", "MatMul"})

#: Parameter inputs that are indices/shapes, never quantized (stay INT64/FLOAT in the file, §2.4).
INDEX_INPUTS: dict[str, frozenset[int]] = {
    "Reshape": frozenset({1}),
    "Squeeze": frozenset({1}),
    "Unsqueeze": frozenset({1}),
    "Slice": frozenset({1, 2, 3, 4}),
    "Pad": frozenset({1, 3}),
    "Split": frozenset({1}),
    "Gather": frozenset({1}),
    "Resize": frozenset({1, 2, 3}),
    "ScatterND": frozenset({1}),
    **dict.fromkeys(REDUCE_OPS, frozenset({1})),
    "RMSNormalization": frozenset({1}),
    "Expand": frozenset({1}),
    "Tile": frozenset({1}),
    "TopK": frozenset({1}),
    "GRU": frozenset({4}),
    "LSTM": frozenset({4}),
}

#: Parameter inputs that take their activation input's exponent (Clip bounds, Pad value; §2.5).
SHARED_WITH_INPUT: dict[str, frozenset[int]] = {
    "Clip": frozenset({1, 2}),
    "Pad": frozenset({2}),
}

#: Weighted ops: (weight input, bias input). The bias exponent = input exponent + weight exponent.
WEIGHTED_OPS: dict[str, tuple[int, int | None]] = {
    "Conv": (1, 2),
    "Gemm": (1, 2),
    "MatMul": (1, None),
}

#: Recurrent ops: inputs with a fixed 16-bit exponent 2^-9 (ESP-PPQ GRU/LSTM_QUANT_EXPONENT, §2.5).
RNN_FIXED_EXPONENT = -9
RNN_FIXED_INPUTS: dict[str, frozenset[int]] = {"GRU": frozenset({3}), "LSTM": frozenset({3, 6})}
RNN_OPS = frozenset({"GRU", "LSTM"})


#: Rounding of parameters (weights, biases, constants), done offline by the exporter on every target.
#: ESP-PPQ rounds them with the chip's runtime mode (half-up on ESP32-S3 and C chips); that biases every
#: tie upward, and ties are common when a model's weights already sit on a finer power-of-two grid (the
#: zoo MobileNetV2: int8 weights re-quantized per tensor put ~half the weights of some layers on exact
#: ties). Half-to-even is unbiased and costs nothing on the chip, so espq uses it for parameters everywhere
#: (esp_ppq_facts §9.2-style flaw, fixed here; activations still use the chip's runtime rounding).
PARAMETER_ROUNDING = "half_even"


def weight_channel_axis(op_type: str, attrs: dict) -> int | None:
    """Output-channel axis of a weight for per-channel quantization, or None if not per-channel-able."""
    if op_type == "Conv":
        return 0
    if op_type == "Gemm":
        return 0 if attrs.get("transB", 0) else 1
    return None
