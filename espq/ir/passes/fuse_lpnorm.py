"""Fuse a decomposed L1/L2 normalisation into one ``LpNormalization`` node (ESP-DL op, esp_dl_facts.md
§3.2; ESP-PPQ 1.3.12 FUSE_LP_NORMALIZATION, esp_ppq_facts.md §3.2 item 9).

``F.normalize(x, p, dim)`` exports as ``Div(x, Expand(Clip(ReduceL2(x, [dim]), min=ε), Shape(x)))``; the
Clip and the Expand may be missing (hand-written models, or the Expand folded away), and p = 1 uses
ReduceL1. ONNX's LpNormalization has no ε: the fusion is exact except for a vector whose norm is below
ε (≤ 1e-6 accepted), which the chain maps to x/ε and LpNormalization to x/0.
"""

from __future__ import annotations

import logging

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import const, reduce_axes, replace_chain, skip, sole_consumer

logger = logging.getLogger(__name__)

_MAX_EPS = 1e-6


def _tiny_clip(graph: Graph, node: Node) -> bool:
    """A Clip with only a lower bound, at most ``_MAX_EPS`` (opset-11 inputs or opset-6 attributes)."""
    if len(node.inputs) > 1:
        low = const(graph, node.inputs[1]) if node.inputs[1] else None
        high = node.inputs[2] if len(node.inputs) > 2 else ""
        return low is not None and low.size == 1 and 0 <= float(low.reshape(-1)[0]) <= _MAX_EPS and not high
    low, high = node.attr("min"), node.attr("max")
    return low is not None and 0 <= float(low) <= _MAX_EPS and high is None


def _match(graph: Graph, red: Node) -> tuple[list[Node], dict] | None:
    x = red.inputs[0]
    shape = graph.shape(x)
    if shape is None or x in graph.initializers:
        return None
    axes = reduce_axes(graph, red, len(shape), red.op_type)
    if axes is None or len(axes) != 1:
        return None
    chain, tail = [red], red.outputs[0]
    for op in ("Clip", "Expand"):
        n = sole_consumer(graph, tail)
        if n is not None and n.op_type == op and n.inputs[0] == tail:
            if op == "Clip" and not _tiny_clip(graph, n):
                return None
            chain.append(n)
            tail = n.outputs[0]
    div = sole_consumer(graph, tail)
    if div is None or div.op_type != "Div" or div.inputs != [x, tail]:
        return None
    chain.append(div)
    p = 2 if red.op_type == "ReduceL2" else 1
    return chain, {"x": x, "axis": axes[0], "p": p, "out": div.outputs[0]}


def fuse_lpnorm(graph: Graph) -> int:
    """Replace decomposed L1/L2 normalisations by ``LpNormalization``. Returns #fusions.

    * matches: ``ReduceL2|ReduceL1(x, [axis], keepdims=1) → [Clip(min ≤ 1e-6)] → [Expand] → Div(x, ·)``;
    * fires when: ``x`` is statically shaped and every intermediate is read only inside the chain;
    * produces: ``LpNormalization(x, axis, p)`` named ``<Reduce>/LpNorm`` writing the Div's output.
    """
    count = 0
    for red in list(graph.nodes):
        if red.op_type not in ("ReduceL2", "ReduceL1") or red not in graph.nodes:
            continue
        found = _match(graph, red)
        if found is None:
            skip(logger, red, "not the head of a decomposed Lp normalisation")
            continue
        chain, f = found
        node = Node(
            graph.unique_name(f"{red.name}/LpNorm"), "LpNormalization", [f["x"]], [f["out"]],
            {"axis": f["axis"], "p": f["p"]},
        )  # fmt: skip
        replace_chain(graph, chain, node)
        count += 1
    return count
