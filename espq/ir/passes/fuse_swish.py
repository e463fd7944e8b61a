"""Fuse ``x · Sigmoid(x)`` into a single ``Swish`` node (ESP-DL op, esp_dl_facts.md §3.1/§3.2).

Mirrors ESP-PPQ FUSE_SWISH (esp_ppq_facts.md §3.2 item 7), including its rule that a graph input
feeding Sigmoid·Mul is not fused. ``Swish`` has no attributes here (ESP-DL's Swish is x·σ(x)); note
that onnxruntime at opset 18 does not know this op.
"""

from __future__ import annotations

import logging

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import skip, sole_consumer

logger = logging.getLogger(__name__)


def fuse_swish(graph: Graph) -> int:
    """Replace ``Mul(x, Sigmoid(x))`` (either operand order) by ``Swish(x)``. Returns #fusions.

    * matches: a Mul with one operand produced by a Sigmoid whose input is the Mul's other operand;
    * fires when: the Sigmoid output is read only by that Mul (and is not a graph output), and
      ``x`` is neither a graph input nor a constant;
    * produces: ``Swish(x)`` named ``<sigmoid name>/Swish`` writing the Mul's output.
    """
    count = 0
    for mul in list(graph.nodes):
        if mul.op_type != "Mul" or len(mul.inputs) != 2 or mul.domain not in ("", "ai.onnx"):
            continue
        sig: Node | None = None
        for i in (0, 1):
            p = graph.producer(mul.inputs[i])
            if p is not None and p.op_type == "Sigmoid" and p.inputs[0] == mul.inputs[1 - i]:
                sig = p
                break
        if sig is None:
            continue
        x = sig.inputs[0]
        if x in graph.inputs or x in graph.initializers:
            skip(logger, mul, f"'{x}' is a graph input or constant")
            continue
        if sole_consumer(graph, sig.outputs[0]) is not mul:
            skip(logger, mul, f"Sigmoid output '{sig.outputs[0]}' has other readers")
            continue
        graph.values.pop(sig.outputs[0], None)
        graph.remove_node(sig)
        mul.op_type = "Swish"
        mul.name = graph.unique_name(f"{sig.name}/Swish")
        mul.inputs = [x]
        mul.attrs = {}
        graph.invalidate()
        count += 1
    return count
