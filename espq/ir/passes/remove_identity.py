"""Remove ``Identity`` and inference-mode ``Dropout`` (ESP-PPQ REMOVE_IDENTITY, esp_ppq_facts.md §3.2)."""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import const, skip

logger = logging.getLogger(__name__)


def _why_not(graph: Graph, node: Node) -> str | None:
    """The reason ``node`` cannot be bypassed, or ``None`` when it can."""
    src, dst = node.inputs[0], node.outputs[0]
    if not src:
        return "no data input"
    if dst in graph.outputs and (src in graph.inputs or src in graph.initializers or src in graph.outputs):
        # bypassing would rename a graph output (or alias two outputs)
        return "its input is a graph input/initializer/output and its output is a graph output"
    if node.op_type == "Dropout":
        if len(node.inputs) > 2 and node.inputs[2]:
            mode = const(graph, node.inputs[2])
            if mode is None or bool(np.asarray(mode).reshape(-1)[0]):
                return "training_mode is not a constant False"
        if len(node.outputs) > 1 and node.outputs[1]:
            mask = node.outputs[1]
            if graph.consumers(mask) or mask in graph.outputs:
                return "its mask output is used"
    return None


def remove_identity(graph: Graph) -> int:
    """Bypass ``Identity`` and ``Dropout`` (inference) nodes. Returns #nodes removed.

    * matches: ``Identity``; ``Dropout`` whose training_mode input is absent or constant False;
    * skips: a Dropout whose mask output is read; a node whose removal would rename a graph output;
    * produces: readers read the node's input; a graph output keeps its name (see :meth:`Graph.bypass`).
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type not in ("Identity", "Dropout") or node.domain not in ("", "ai.onnx"):
            continue
        reason = _why_not(graph, node)
        if reason is not None:
            skip(logger, node, reason)
            continue
        if node.op_type == "Dropout" and len(node.outputs) > 1:
            if node.outputs[1]:
                graph.values.pop(node.outputs[1], None)
            node.outputs = node.outputs[:1]
        graph.bypass(node)
        count += 1
    return count
