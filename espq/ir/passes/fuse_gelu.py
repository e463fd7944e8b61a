"""Fuse decomposed GELU subgraphs into one ``Gelu`` node (ESP-DL runs Gelu as its LUT module,
esp_dl_facts.md §3.2; ESP-PPQ 1.3.12 ``GraphMerger.fuse_gelu`` fuses the erf form without checking its
constants).

PyTorch exports ``F.gelu`` at opsets < 20 as one of::

    erf:   0.5 · x · (1 + Erf(x / √2))                                  (Div by √2, or Mul by 1/√2)
    tanh:  0.5 · x · (1 + Tanh(√(2/π) · (x + 0.044715 · x³)))           (x³ = Pow(x, 3) or Mul(x, Mul(x, x)))

and hand-written models (Hugging Face ``gelu_new``) compute ``0.5 · x`` first. The constants are checked
(relative tolerance 1e-3), so a look-alike with other constants is left alone. The tanh form becomes
``Gelu(approximate="tanh")``; the exporter's tables are built from the fused node, so they follow it.
"""

from __future__ import annotations

import logging
import math

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import other_input, replace_chain, scalar, skip, sole_consumer

logger = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)
_TANH_SCALE = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


def _near(value: float | None, want: float) -> bool:
    return value is not None and math.isclose(value, want, rel_tol=1e-3)


def _binary(node: Node | None, op: str) -> bool:
    return node is not None and node.op_type == op and len(node.inputs) == 2 and len(node.outputs) == 1


def _by_constant(graph: Graph, node: Node | None, op: str, tensor: str, want: float) -> bool:
    """``node`` is ``op(tensor, c)`` (either order for Mul/Add) with the one-element constant ``c ≈ want``."""
    if not _binary(node, op) or tensor not in node.inputs:
        return False
    if op == "Div" and node.inputs[0] != tensor:
        return False
    return _near(scalar(graph, other_input(node, tensor)), want)


def _erf_argument(graph: Graph, erf: Node) -> tuple[str, list[Node]] | None:
    """(x, [scaling node]) when the Erf reads ``x / √2`` or ``x · (1/√2)``."""
    p = graph.producer(erf.inputs[0])
    if p is None or sole_consumer(graph, p.outputs[0]) is not erf:
        return None
    for x in p.inputs if _binary(p, p.op_type) else []:
        if _by_constant(graph, p, "Div", x, _SQRT2) or _by_constant(graph, p, "Mul", x, 1 / _SQRT2):
            return x, [p]
    return None


def _cube_of(graph: Graph, tensor: str) -> tuple[str, list[Node]] | None:
    """(x, nodes) when ``tensor`` is ``Pow(x, 3)``, ``Mul(x, Mul(x, x))`` or ``Mul(Mul(x, x), x)``."""
    p = graph.producer(tensor)
    if p is None or sole_consumer(graph, tensor) is None:
        return None
    if _binary(p, "Pow") and _near(scalar(graph, p.inputs[1]), 3.0):
        return p.inputs[0], [p]
    if not _binary(p, "Mul"):
        return None
    for i in (0, 1):
        sq = graph.producer(p.inputs[i])
        x = p.inputs[1 - i]
        if _binary(sq, "Mul") and sq.inputs == [x, x] and sole_consumer(graph, sq.outputs[0]) is p:
            return x, [sq, p]
    return None


def _tanh_argument(graph: Graph, tanh: Node) -> tuple[str, list[Node]] | None:
    """(x, nodes) when the Tanh reads ``√(2/π) · (x + 0.044715 · x³)``."""
    scale = graph.producer(tanh.inputs[0])
    if not _binary(scale, "Mul") or sole_consumer(graph, scale.outputs[0]) is not tanh:
        return None
    for v in scale.inputs:
        if not _by_constant(graph, scale, "Mul", v, _TANH_SCALE):
            continue
        add = graph.producer(v)
        if not _binary(add, "Add") or sole_consumer(graph, v) is not scale:
            continue
        for i in (0, 1):
            x, w = add.inputs[i], add.inputs[1 - i]
            cubic = graph.producer(w)
            if not _binary(cubic, "Mul") or sole_consumer(graph, w) is not add:
                continue
            for c in cubic.inputs:
                cube = _cube_of(graph, c) if _by_constant(graph, cubic, "Mul", c, _CUBIC) else None
                if cube is not None and cube[0] == x:
                    return x, [*cube[1], cubic, add, scale]
    return None


def _half_product(graph: Graph, x: str, s: str) -> tuple[list[Node], str] | None:
    """(nodes, output) computing ``0.5 · x · s`` from ``s`` in any of the three orders."""
    m1 = sole_consumer(graph, s)
    if not _binary(m1, "Mul"):
        return None
    if sorted(m1.inputs) == sorted([x, s]):  # (x · s) · 0.5
        m2 = sole_consumer(graph, m1.outputs[0])
        if _by_constant(graph, m2, "Mul", m1.outputs[0], 0.5):
            return [m1, m2], m2.outputs[0]
        return None
    if _by_constant(graph, m1, "Mul", s, 0.5):  # x · (s · 0.5)
        m2 = sole_consumer(graph, m1.outputs[0])
        if _binary(m2, "Mul") and sorted(m2.inputs) == sorted([x, m1.outputs[0]]):
            return [m1, m2], m2.outputs[0]
        return None
    h = graph.producer(other_input(m1, s))  # (0.5 · x) · s
    if _by_constant(graph, h, "Mul", x, 0.5) and sole_consumer(graph, h.outputs[0]) is m1:
        return [h, m1], m1.outputs[0]
    return None


def _match(graph: Graph, node: Node) -> tuple[list[Node], Node] | None:
    """(chain, fused node) for the GELU whose Erf/Tanh is ``node``, else ``None``."""
    arg = _erf_argument(graph, node) if node.op_type == "Erf" else _tanh_argument(graph, node)
    if arg is None:
        return None
    x, head = arg
    one = sole_consumer(graph, node.outputs[0])
    if not _by_constant(graph, one, "Add", node.outputs[0], 1.0):
        return None
    tail = _half_product(graph, x, one.outputs[0])
    if tail is None:
        return None
    chain = [*head, node, one, *tail[0]]
    attrs = {"approximate": "tanh"} if node.op_type == "Tanh" else {}
    return chain, Node(graph.unique_name(f"{node.name}/Gelu"), "Gelu", [x], [tail[1]], attrs)


def fuse_gelu(graph: Graph) -> int:
    """Replace decomposed GELU subgraphs by ``Gelu``. Returns #fusions.

    * matches: the erf and tanh forms of the module docstring, the ``0.5 · x`` product in any order;
    * fires when: the constants are GELU's (√2 or 1/√2, 1, 0.5; √(2/π), 0.044715, 3) and every
      intermediate is read only inside the chain (none is a graph output);
    * produces: ``Gelu(x)`` (``approximate="tanh"`` for the tanh form) named ``<Erf|Tanh>/Gelu`` writing
      the chain's last output.
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type not in ("Erf", "Tanh") or node not in graph.nodes:
            continue
        found = _match(graph, node)
        if found is None:
            skip(logger, node, "not part of a decomposed GELU")
            continue
        chain, gelu = found
        replace_chain(graph, chain, gelu)
        count += 1
    return count
