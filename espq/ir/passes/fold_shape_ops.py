"""Replace ``Shape`` / ``Size`` of a statically shaped tensor by a constant.

Together with :func:`espq.ir.passes.fold_constants.fold_constants` this turns the
Shape→Gather→Concat→Reshape chains of dynamic-shape exports into constants once the input
dims are fixed (ESP-PPQ relies on onnxsim for this, esp_ppq_facts.md §3.1).
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph
from espq.ir.passes._common import skip

logger = logging.getLogger(__name__)


def fold_shape_ops(graph: Graph) -> int:
    """Turn ``Shape(x)`` / ``Size(x)`` into an INT64 initializer when ``x``'s shape is static.

    * matches: ``Shape`` (with optional opset-15 ``start``/``end``) and ``Size`` nodes;
    * skips: unknown shape of ``x``; outputs that are graph outputs;
    * produces: ``graph.initializers[<output name>]`` and removes the node. Returns #nodes folded.
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type not in ("Shape", "Size") or node.domain not in ("", "ai.onnx"):
            continue
        shape = graph.shape(node.inputs[0])
        out = node.outputs[0]
        if shape is None:
            skip(logger, node, f"shape of '{node.inputs[0]}' is not static")
            continue
        if out in graph.outputs:
            skip(logger, node, "its output is a graph output")
            continue
        if node.op_type == "Size":
            value = np.array(int(np.prod(shape, dtype=np.int64)), np.int64)
        else:
            r = len(shape)
            start, end = node.attrs.get("start", 0), node.attrs.get("end", r)
            # opset-15 semantics: negative values count from the back, then clamp to [0, r]
            start = min(max(start + r if start < 0 else start, 0), r)
            end = min(max(end + r if end < 0 else end, 0), r)
            value = np.array(shape[start:end], np.int64)
        graph.remove_node(node)
        graph.values.pop(out, None)
        graph.initializers[out] = value
        count += 1
    return count
