"""Fuse a decomposed LayerNorm into one ``LayerNormalization`` node (ESP-DL op, esp_dl_facts.md §3.2).

PyTorch exports ``nn.LayerNorm`` at opsets < 17 as (openWakeWord's wake-word heads, issue 13)::

    m = ReduceMean(x, axes)      d = Sub(x, m)        v = ReduceMean(Pow(d, 2), axes)
    y = Div(d, Sqrt(Add(v, eps)))  [· Mul(y, gamma)]  [+ Add(·, beta)]

Quantized op by op this chain is fragile (Sub's output exponent clips both operands, the variance
underflows, Div by 0); ESP-DL's LayerNormalization computes it in float internally. ESP-DL
normalises the trailing axes from ``axis`` on, so the reduced axes must be such a suffix.
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


def _match(graph: Graph, mean: Node) -> tuple[list[Node], dict] | None:
    """The chain starting at ReduceMean ``mean`` and the fused node's fields, or ``None``."""
    x = mean.inputs[0]
    shape = graph.shape(x)
    if shape is None:
        return None
    r = len(shape)
    axes = reduce_axes(graph, mean, r)
    if axes is None or axes != list(range(r - len(axes), r)):
        return None
    axis = r - len(axes)
    sub = sole_consumer(graph, mean.outputs[0])
    if sub is None or sub.op_type != "Sub" or sub.inputs != [x, mean.outputs[0]]:
        return None
    d = sub.outputs[0]
    if d in graph.outputs or len(graph.consumers(d)) != 2:
        return None
    readers = {n.op_type: n for n in graph.consumers(d)}
    sq, div = readers.get("Pow"), readers.get("Div")
    if sq is None:
        sq = readers.get("Mul")
        if sq is None or sq.inputs != [d, d]:
            return None
    elif sq.inputs[0] != d or scalar(graph, sq.inputs[1]) != 2.0:
        return None
    if div is None or div.inputs[0] != d:
        return None
    var = sole_consumer(graph, sq.outputs[0])
    if var is None or reduce_axes(graph, var, r) != axes:
        return None
    add = sole_consumer(graph, var.outputs[0])
    if add is None or add.op_type != "Add" or var.outputs[0] not in add.inputs:
        return None
    eps = scalar(graph, other_input(add, var.outputs[0]))
    sqrt = sole_consumer(graph, add.outputs[0])
    if eps is None or eps < 0 or sqrt is None or sqrt.op_type != "Sqrt":
        return None
    if sole_consumer(graph, sqrt.outputs[0]) is not div or div.inputs[1] != sqrt.outputs[0]:
        return None
    chain = [mean, sub, sq, var, add, sqrt, div]
    tail = div.outputs[0]
    scale, mul = trailing_param(graph, sole_consumer(graph, tail), tail, "Mul", shape, axis)
    if mul is not None:
        chain.append(mul)
        tail = mul.outputs[0]
    bias, badd = trailing_param(graph, sole_consumer(graph, tail), tail, "Add", shape, axis)
    if badd is not None:
        chain.append(badd)
        tail = badd.outputs[0]
    if scale is None:
        scale = np.ones(shape[axis:], np.float32)
    return chain, {"x": x, "axis": axis, "eps": eps, "scale": scale, "bias": bias, "out": tail}


def fuse_layernorm(graph: Graph) -> int:
    """Replace decomposed LayerNorm chains by ``LayerNormalization``. Returns #fusions.

    * matches: ``ReduceMean(x) → Sub(x, ·) → Pow(·, 2)|Mul(d, d) → ReduceMean → Add(eps) → Sqrt →
      Div(d, ·)``, optionally followed by ``Mul(gamma)`` and ``Add(beta)`` (constants varying only
      over the normalised axes);
    * fires when: both ReduceMeans keep dims and reduce the same trailing axes of a statically
      shaped ``x``, and every intermediate is read only inside the chain (none is a graph output);
    * produces: ``LayerNormalization(x, scale[, bias], axis, epsilon)`` named ``<ReduceMean>/LayerNorm``
      writing the chain's last output (scale is ones when there is no Mul).
    """
    count = 0
    for mean in list(graph.nodes):
        if mean.op_type != "ReduceMean" or mean not in graph.nodes:
            continue
        found = _match(graph, mean)
        if found is None:
            skip(logger, mean, "not the head of a decomposed LayerNorm")
            continue
        chain, f = found
        inputs = [f["x"], add_initializer(graph, f"{mean.name}_ln_scale", f["scale"])]
        if f["bias"] is not None:
            inputs.append(add_initializer(graph, f"{mean.name}_ln_bias", f["bias"]))
        ln = Node(
            graph.unique_name(f"{mean.name}/LayerNorm"),
            "LayerNormalization",
            inputs,
            [f["out"]],
            {"axis": f["axis"], "epsilon": f["eps"]},
        )
        replace_chain(graph, chain, ln)
        count += 1
    return count
