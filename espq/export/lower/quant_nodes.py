"""Insert QuantizeLinear / RequantizeLinear / DequantizeLinear at precision boundaries
(esp_ppq_facts.md §3.7 step 5, esp_dl_facts.md §3.2 and §4.9).

* quantized consumer, float producer (no spec) -> ``QuantizeLinear`` to the consumer's input spec;
* quantized consumer whose input spec (``plan.input_spec``) differs in bits or exponent from the
  tensor's spec -> ``RequantizeLinear`` (``plan.requant`` entries equal to the tensor's spec need none);
* F32 consumer of a quantized tensor -> ``DequantizeLinear``.

One node per (tensor, target spec), shared by all consumers that need the same conversion (ESP-PPQ
inserts one per consumer). The runtime ignores the scale / zero-point inputs but loads them, so they
are written as ESP-PPQ writes them: scale FLOAT [1] (Quantize/Dequantize: 2^e; Requantize: the rescale
2^(e_out - e_in)), zero point INT8/INT16 [1] = 0 (§4.4).
"""

from __future__ import annotations

import numpy as np

from espq.export.lower.state import QUANT_TYPE, ExportState
from espq.ir import Node
from espq.ir.spec import F32, QUANT_TYPE_OF_BITS, TensorSpec

#: Consumers that read only the shape of their input (no conversion needed).
SHAPE_READERS = frozenset({"Shape", "Size"})


def _int_dtype(bits: int) -> type:
    return np.int8 if bits <= 8 else np.int16


def _same(a: TensorSpec, b: TensorSpec) -> bool:
    return a.bits == b.bits and a.exponent == b.exponent


def insert_quant_nodes(state: ExportState) -> dict[str, int]:
    """Insert the conversion nodes; returns counts per op type inserted."""
    g = state.graph
    made: dict[tuple[str, str, int | None, int | None], str] = {}
    counts = {"QuantizeLinear": 0, "RequantizeLinear": 0, "DequantizeLinear": 0}
    for node in list(g.nodes):
        if node.op_type in SHAPE_READERS:
            continue
        qt = state.quant_type(node)
        for i, t in enumerate(node.inputs):
            if not state.is_activation(t):
                continue
            have = state.specs.get(t)
            if qt == F32:
                if have is None:
                    continue
                key = (t, "deq", None, None)
                if key not in made:
                    made[key] = _insert(state, node, "DequantizeLinear", t, have, None)
                    counts["DequantizeLinear"] += 1
                node.inputs[i] = made[key]
                continue
            need = state.plan.input_spec(node.name, i, t)
            if need is None or need.exponent is None or (have is not None and _same(have, need)):
                continue
            op = "QuantizeLinear" if have is None else "RequantizeLinear"
            key = (t, op, need.bits, need.exponent)
            if key not in made:
                made[key] = _insert(state, node, op, t, have, need)
                counts[op] += 1
            node.inputs[i] = made[key]
    g.invalidate()
    return counts


def _insert(state: ExportState, before: Node, op: str, src: str, have: TensorSpec | None, need) -> str:
    g = state.graph
    if op == "DequantizeLinear":
        out_spec, e_scale, zp_bits = None, int(have.exponent), have.bits
        out = state.new_tensor(f"{src}_dequantized", src, None, np.float32)
        quant_type = F32
    else:
        out_spec = TensorSpec(bits=need.bits, exponent=int(need.exponent))
        e_scale = int(need.exponent) if have is None else int(need.exponent) - int(have.exponent)
        zp_bits = need.bits
        suffix = "quantized" if have is None else "requantized"
        out = state.new_tensor(f"{src}_{suffix}", src, out_spec, np.float32)
        quant_type = QUANT_TYPE_OF_BITS[need.bits]
    name = g.unique_name(f"{op}_{src}")
    scale = state.new_initializer(f"{name}_scale", np.array(2.0**e_scale, dtype=np.float32))
    zp = state.new_initializer(f"{name}_zero_point", np.array(0, dtype=_int_dtype(zp_bits)))
    state.insert_before(before, Node(name, op, [src, scale, zp], [out], {QUANT_TYPE: quant_type}))
    return out
