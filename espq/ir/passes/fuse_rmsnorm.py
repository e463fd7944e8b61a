"""Fuse a decomposed RMSNorm into one ``RMSNormalization`` node (ESP-DL op, esp_dl_facts.md §3.2; ESP-PPQ
1.3.12 FUSE_RMSNORM, esp_ppq_facts.md §3.2 item 8).

Exported ``x · rsqrt(mean(x²) + ε) · γ`` (Llama/T5-style RMSNorm) looks like::

    s = ReduceMean(Pow(x, 2) | Mul(x, x), trailing axes)   [Add(s, ε)]   r = Sqrt(·)
    y = Mul(x, Reciprocal(r)) | Mul(x, Div(1, r)) | Div(x, r)             [Mul(y, γ)]

ESP-DL's RMSNormalization normalises the trailing axes from ``axis`` on and computes in float inside, so
the chain's fragile int8 intermediates (x², its mean) disappear. Without ``Add(ε)`` the fused node gets
ε = 0 (the chain's own value), without ``Mul(γ)`` a scale of ones. Runs after ``fuse_layernorm``, whose
variance branch ``Pow(x − mean, 2) … Div`` has the same shape.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import (
    add_initializer,
    other_input,
    reduce_axes,
    replace_chain,
    scalar,
    skip,
    sole_consumer,
    trailing_param,
)

logger = logging.getLogger(__name__)


def _square_of(graph: Graph, node: Node) -> str | None:
    """``x`` when ``node`` is ``Pow(x, 2)`` or ``Mul(x, x)``."""
    if node.op_type == "Pow" and len(node.inputs) == 2 and scalar(graph, node.inputs[1]) == 2.0:
        return node.inputs[0]
    if node.op_type == "Mul" and len(node.inputs) == 2 and node.inputs[0] == node.inputs[1]:
        return node.inputs[0]
    return None


def _normalised(graph: Graph, x: str, root: str) -> tuple[list[Node], str] | None:
    """(nodes, y) for ``y = x / root`` written as Div(x, r), Mul(x, Reciprocal(r)) or Mul(x, Div(1, r))."""
    n = sole_consumer(graph, root)
    if n is None:
        return None
    if n.op_type == "Div" and n.inputs == [x, root]:
        return [n], n.outputs[0]
    is_inverse = (n.op_type == "Reciprocal" and n.inputs == [root]) or (
        n.op_type == "Div" and n.inputs[1] == root and scalar(graph, n.inputs[0]) == 1.0
    )
    if not is_inverse:
        return None
    mul = sole_consumer(graph, n.outputs[0])
    if mul is None or mul.op_type != "Mul" or sorted(mul.inputs) != sorted([x, n.outputs[0]]):
        return None
    return [n, mul], mul.outputs[0]


def _match(graph: Graph, sq: Node) -> tuple[list[Node], dict] | None:
    x = _square_of(graph, sq)
    shape = graph.shape(x) if x else None
    if x is None or shape is None or x in graph.initializers:
        return None
    r = len(shape)
    mean = sole_consumer(graph, sq.outputs[0])
    axes = reduce_axes(graph, mean, r) if mean is not None else None
    if axes is None or axes != list(range(r - len(axes), r)):
        return None
    axis = r - len(axes)
    chain, tail, eps = [sq, mean], mean.outputs[0], 0.0
    add = sole_consumer(graph, tail)
    if add is not None and add.op_type == "Add" and tail in add.inputs:
        eps = scalar(graph, other_input(add, tail))
        if eps is None or eps < 0:
            return None
        chain.append(add)
        tail = add.outputs[0]
    sqrt = sole_consumer(graph, tail)
    if sqrt is None or sqrt.op_type != "Sqrt":
        return None
    chain.append(sqrt)
    found = _normalised(graph, x, sqrt.outputs[0])
    if found is None:
        return None
    chain += found[0]
    tail = found[1]
    scale, mul = trailing_param(graph, sole_consumer(graph, tail), tail, "Mul", shape, axis)
    if mul is not None:
        chain.append(mul)
        tail = mul.outputs[0]
    else:
        scale = np.ones(shape[axis:], np.float32)
    return chain, {"x": x, "axis": axis, "eps": float(eps), "scale": scale, "out": tail}


def fuse_rmsnorm(graph: Graph) -> int:
    """Replace decomposed RMSNorm chains by ``RMSNormalization``. Returns #fusions.

    * matches: the chain of the module docstring;
    * fires when: the ReduceMean keeps dims over trailing axes of a statically shaped ``x``, ε is a
      non-negative one-element constant, γ varies only over the normalised axes, and every intermediate
      is read only inside the chain;
    * produces: ``RMSNormalization(x, scale, axis, epsilon)`` named ``<Pow|Mul>/RMSNorm`` writing the
      chain's last output.
    """
    count = 0
    for sq in list(graph.nodes):
        if sq.op_type not in ("Pow", "Mul") or sq not in graph.nodes:
            continue
        found = _match(graph, sq)
        if found is None:
            skip(logger, sq, "not the head of a decomposed RMSNorm")
            continue
        chain, f = found
        node = Node(
            graph.unique_name(f"{sq.name}/RMSNorm"),
            "RMSNormalization",
            [f["x"], add_initializer(graph, f"{sq.name}_rms_scale", f["scale"])],
            [f["out"]],
            {"axis": f["axis"], "epsilon": f["eps"]},
        )
        replace_chain(graph, chain, node)
        count += 1
    return count
