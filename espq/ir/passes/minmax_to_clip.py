"""Rewrite ``Max(x, c)`` / ``Min(x, c)`` with a uniform constant ``c`` as ``Clip`` (issue 13 finding 8).

ESP-DL has no Max/Min between a tensor and a constant, but it has Clip (esp_dl_facts.md §3.2, §4.6):
``Max(x, c) = Clip(x, min=c)`` and ``Min(x, c) = Clip(x, max=c)`` exactly, when ``c`` holds one value
and broadcasting it does not change ``x``'s shape (TensorFlow exports ``tf.maximum(x, -0.4)`` as
``Max(x, c)`` with ``c`` of shape ``[1, 1, 1, 1]``: openWakeWord's embedding model has 19 of them).
A constant with several values is left alone (the capability check then names the op and the fix).

Then ``Clip(Clip(x, l1, h1), l2, h2)`` becomes one ``Clip(x, max(l1, l2), min(h1, h2))`` (so
``Max(Min(x, a), b)`` chains end as one Clip) when the two intervals overlap; with disjoint intervals
the chain is constant and ONNX's "min > max" rule would not reproduce it, so it stays two Clips.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, skip, sole_consumer

logger = logging.getLogger(__name__)

_CLIP_OPSET = 11  # Clip takes its bounds as inputs from opset 11 on


def _uniform(graph: Graph, tensor: str, x_shape: tuple[int, ...] | None) -> float | None:
    """The single value of floating constant ``tensor`` when broadcasting it keeps ``x_shape``."""
    c = const(graph, tensor)
    if c is None or c.size == 0 or not np.issubdtype(c.dtype, np.floating):
        return None
    if c.ndim > 0:
        if x_shape is None or c.ndim > len(x_shape):
            return None
        if any(d not in (1, s) for d, s in zip(c.shape, x_shape[len(x_shape) - c.ndim :])):
            return None
    flat = c.reshape(-1)
    if np.isnan(flat).any() or not (flat == flat[0]).all():
        return None
    return float(flat[0])


def _to_clip(graph: Graph, node: Node) -> bool:
    """Turn Max/Min ``node`` (one activation, the rest uniform constants) into a Clip."""
    acts = [t for t in node.inputs if t and const(graph, t) is None]
    if len(acts) != 1 or len(node.inputs) < 2:
        skip(logger, node, "needs exactly one non-constant operand and a constant")
        return False
    x = acts[0]
    dtype = graph.dtype(x)
    if dtype is not None and not np.issubdtype(dtype, np.floating):
        skip(logger, node, f"integer operand '{x}'")
        return False
    values = [_uniform(graph, t, graph.shape(x)) for t in node.inputs if t != x]
    if any(v is None for v in values):
        skip(logger, node, "a constant operand is not one value broadcast to the tensor's shape")
        return False
    dtype = dtype or np.dtype(np.float32)
    if node.op_type == "Max":
        bounds = [add_initializer(graph, f"{node.name}_min", np.array(max(values), dtype))]
    else:
        bounds = ["", add_initializer(graph, f"{node.name}_max", np.array(min(values), dtype))]
    node.op_type = "Clip"
    node.inputs = [x, *bounds]
    node.attrs = {}
    return True


def _bounds(graph: Graph, node: Node) -> tuple[float, float] | None:
    """(min, max) of a Clip whose bounds are absent or one-element constants."""
    out = []
    for i, default in ((1, -np.inf), (2, np.inf)):
        t = node.inputs[i] if len(node.inputs) > i else ""
        if not t:
            out.append(default)
            continue
        c = const(graph, t)
        if c is None or c.size != 1:
            return None
        out.append(float(c.reshape(-1)[0]))
    return out[0], out[1]


def _merge(graph: Graph, outer: Node) -> bool:
    """Fold ``outer = Clip(inner = Clip(x))`` into ``outer`` when their intervals overlap."""
    inner = graph.producer(outer.inputs[0])
    if inner is None or inner.op_type != "Clip" or inner.attrs or outer.attrs:
        return False
    if sole_consumer(graph, inner.outputs[0]) is not outer:
        return False
    a, b = _bounds(graph, inner), _bounds(graph, outer)
    if a is None or b is None:
        return False
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    if lo > hi:
        skip(logger, outer, "disjoint Clip intervals (constant output)")
        return False
    dtype = graph.dtype(inner.inputs[0]) or np.dtype(np.float32)
    ins = [inner.inputs[0], "", ""]
    if lo > -np.inf:
        ins[1] = add_initializer(graph, f"{outer.name}_min", np.array(lo, dtype))
    if hi < np.inf:
        ins[2] = add_initializer(graph, f"{outer.name}_max", np.array(hi, dtype))
    while ins[-1] == "":
        ins.pop()
    graph.values.pop(inner.outputs[0], None)
    graph.remove_node(inner)
    outer.inputs = ins
    graph.invalidate()
    return True


def minmax_to_clip(graph: Graph) -> int:
    """Replace Max/Min with uniform constants by Clip, then merge Clip chains; returns #rewrites.

    * matches: ``Max``/``Min`` with one non-constant floating operand and constants that each hold
      one value and broadcast to that operand's shape; ``Clip`` fed by a single-consumer ``Clip``
      with constant scalar (or absent) bounds and no attributes;
    * fires when: the graph is at opset >= 11 (Clip bounds as inputs), and for a merge when the two
      intervals overlap;
    * produces: ``Clip(x, c)`` / ``Clip(x, "", c)`` in place of the node (same name and output);
      one Clip with the intersected interval in place of a chain.
    """
    if graph.opset < _CLIP_OPSET:
        return 0
    count = 0
    for node in list(graph.nodes):
        if node.op_type in ("Max", "Min") and node.domain in ("", "ai.onnx") and _to_clip(graph, node):
            count += 1
    graph.invalidate()
    for node in list(graph.nodes):
        if node.op_type == "Clip" and node.inputs and _merge(graph, node):
            count += 1
    return count
