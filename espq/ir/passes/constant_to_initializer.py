"""Turn ``Constant`` nodes into initializers (ESP-PPQ FORMAT_CONSTANT_INPUT, esp_ppq_facts.md §3.2 item 1)."""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import skip

logger = logging.getLogger(__name__)

# attribute name -> how to build the array (ONNX Constant, opset 1..21)
_SCALARS = {
    "value_float": np.float32,
    "value_int": np.int64,
}
_LISTS = {
    "value_floats": np.float32,
    "value_ints": np.int64,
}


def _constant_value(node: Node) -> np.ndarray | None:
    """The tensor a Constant node produces, or ``None`` for forms we do not handle."""
    if "value" in node.attrs and isinstance(node.attrs["value"], np.ndarray):
        return node.attrs["value"]
    for key, dtype in _SCALARS.items():
        if key in node.attrs:
            return np.array(node.attrs[key], dtype=dtype)
    for key, dtype in _LISTS.items():
        if key in node.attrs:
            return np.array(node.attrs[key], dtype=dtype).reshape(-1)
    if "value_string" in node.attrs:
        return np.array(node.attrs["value_string"].encode("utf-8"), dtype=object)
    if "value_strings" in node.attrs:
        return np.array([s.encode("utf-8") for s in node.attrs["value_strings"]], dtype=object)
    return None


def constant_to_initializer(graph: Graph) -> int:
    """Replace every ``Constant`` node by an initializer of the same name. Returns #nodes replaced.

    * matches: ``Constant`` nodes of the default domain;
    * skips: sparse constants, and constants whose output is also a graph output (an
      initializer cannot stand in for a graph output everywhere);
    * produces: ``graph.initializers[<output name>]`` = the constant's value.
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        out = node.outputs[0]
        if out in graph.outputs:
            skip(logger, node, "its output is a graph output")
            continue
        value = _constant_value(node)
        if value is None:
            skip(logger, node, f"unsupported Constant form (attributes {sorted(node.attrs)})")
            continue
        graph.remove_node(node)
        graph.values.pop(out, None)
        graph.initializers[out] = value
        count += 1
    return count
