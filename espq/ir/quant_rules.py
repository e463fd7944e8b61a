"""How each op type's tensors are quantized: which specs are shared, aligned, derived or left float.

These are properties of ESP-DL's kernels (esp_dl_facts.md §3.2, §4) and of ESP-PPQ's pipeline
(esp_ppq_facts.md §2.5–§2.7); they do not depend on the chip, so they live here, not in ``targets``.
Every set is a view of the op-facts table (:mod:`espq.ir.op_facts`); edit facts there.
"""

from __future__ import annotations

from espq.ir.op_facts import OP_FACTS, Quant, ops_with

#: Ops whose outputs keep input 0's spec: pure data movement (esp_dl_facts §4.10), max/min picks
#: (MaxPool, ReduceMax/Min need equal exponents, §3.2), and the non-rescaling value ops below.
PASSIVE_OPS = ops_with(quant=Quant.PASSIVE) | ops_with(quant=Quant.PASSIVE_VALUE)

#: Passive ops that compute new values (padding, negation, a slope) rather than move them: their
#: outputs are still rounded and saturated (Neg(−128) = 127, PRelu's floored negative side).
PASSIVE_VALUE_OPS = ops_with(quant=Quant.PASSIVE_VALUE)

#: Ops whose activation inputs must carry the output's exponent (the kernel does no rescaling):
#: Add/Sub (§4.4), Concat (§4.10); Resize is aligned the same way by ESP-PPQ ('Align to Output').
#: Value: which input indices are aligned (None = all).
ALIGN_TO_OUTPUT: dict[str, tuple[int, ...] | None] = {
    op: f.aligned_inputs for op, f in OP_FACTS.items() if f.quant is Quant.ALIGN_TO_OUTPUT
}

#: Aligned ops (Add/Sub) whose aligned exponent must also cover the inputs' ranges when the output's
#: range collapses (a decomposed LayerNorm's ``x - mean(x)``): the kernel saturates each input at the
#: output's exponent before adding (esp_dl_facts §4.4), so an exponent fitted to the output alone clips
#: both operands to the same code and the difference to 0.
INPUT_COVERING_OPS = ops_with(covers_inputs=True)

#: Comparisons compare raw integers: all inputs share one exponent chosen from the largest range.
ALIGN_TO_LARGEST = ops_with(quant=Quant.ALIGN_TO_LARGEST)

#: Ops with integer (bool) outputs that carry no exponent.
BOOL_OUTPUT_OPS = ALIGN_TO_LARGEST

#: Ops whose output is float32 even when the op runs quantized (esp_dl_facts §4.8).
FLOAT_OUTPUT_OPS = ops_with(quant=Quant.FLOAT_OUTPUT)

#: Activations whose single-consumer producer shares their output spec (esp_ppq_facts.md §2.6).
ACTIVATIONS_SHARING_INPUT = ops_with(shares_producer_spec=True)

#: Conv-like ops a following single-consumer Relu is fused into at export (activation="Relu").
RELU_FUSION_HOSTS = ops_with(relu_host=True)

#: Parameter inputs that are indices/shapes, never quantized (stay INT64/FLOAT in the file, §2.4).
INDEX_INPUTS: dict[str, frozenset[int]] = {op: f.index_inputs for op, f in OP_FACTS.items() if f.index_inputs}

#: Parameter inputs that take their activation input's exponent (Clip bounds, Pad value; §2.5).
SHARED_WITH_INPUT: dict[str, frozenset[int]] = {
    op: f.shared_inputs for op, f in OP_FACTS.items() if f.shared_inputs
}

#: Weighted ops: (weight input, bias input). The bias exponent = input exponent + weight exponent.
WEIGHTED_OPS: dict[str, tuple[int, int | None]] = {
    op: f.weight_bias for op, f in OP_FACTS.items() if f.weight_bias is not None
}

#: Recurrent ops: inputs with a fixed 16-bit exponent 2^-9 (ESP-PPQ GRU/LSTM_QUANT_EXPONENT, §2.5).
RNN_FIXED_EXPONENT = -9
RNN_FIXED_INPUTS: dict[str, frozenset[int]] = {
    op: f.fixed_exponent_inputs for op, f in OP_FACTS.items() if f.fixed_exponent_inputs
}
RNN_OPS = frozenset(RNN_FIXED_INPUTS)
#: Recurrent ops: outputs with the fixed 16-bit exponent (LSTM's cell state Y_c).
RNN_FIXED_OUTPUTS: dict[str, frozenset[int]] = {
    op: f.fixed_exponent_outputs for op, f in OP_FACTS.items() if f.fixed_exponent_outputs
}
#: Recurrent ops' ``initial_h`` input: ESP-DL copies its raw codes into the hidden state (``memcpy``), so
#: it must carry the Y / Y_h spec (ESP-PPQ slaves it to Y, esp_ppq_facts §2.6).
RNN_INITIAL_H = 5


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
