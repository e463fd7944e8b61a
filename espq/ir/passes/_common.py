"""Small helpers shared by the canonicalisation passes (private to :mod:`espq.ir.passes`)."""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node, TensorInfo


def skip(logger: logging.Logger, node: Node, reason: str) -> None:
    """Record at debug level why a pass did not rewrite ``node``."""
    logger.debug("skip %s (%s): %s", node.name, node.op_type, reason)


def const(graph: Graph, tensor: str) -> np.ndarray | None:
    """The value of ``tensor`` when it is an initializer, else ``None`` (also for ``""``)."""
    if not tensor:
        return None
    return graph.initializers.get(tensor)


def add_initializer(graph: Graph, base: str, value: np.ndarray) -> str:
    """Store ``value`` under a fresh name derived from ``base``; returns the name."""
    name = graph.unique_name(base)
    graph.initializers[name] = np.asarray(value)
    return name


def sole_consumer(graph: Graph, tensor: str) -> Node | None:
    """The only node reading ``tensor``, or ``None`` when it has 0 or >1 readers or is a graph output."""
    if tensor in graph.outputs:
        return None
    readers = graph.consumers(tensor)
    return readers[0] if len(readers) == 1 else None


def rank(graph: Graph, tensor: str) -> int | None:
    """Rank of ``tensor`` when its shape is known."""
    shape = graph.shape(tensor)
    return None if shape is None else len(shape)


def positive_axes(axes: list[int], r: int) -> list[int]:
    """``axes`` with negative entries made positive for rank ``r``."""
    return [a + r if a < 0 else a for a in axes]


def take_over_output(graph: Graph, node: Node, old_tail: Node) -> None:
    """Make ``node`` write the first output of ``old_tail`` (which is then removed).

    Used by fusions (Conv→BN, Conv→Add, MatMul→Add...): the fused node keeps the name of the
    tensor the rest of the graph reads, so downstream names and graph outputs stay stable.
    ``node``'s previous output must have had ``old_tail`` as its only reader.
    """
    old_out, new_out = node.outputs[0], old_tail.outputs[0]
    graph.remove_node(old_tail)
    node.outputs[0] = new_out
    graph.values.pop(old_out, None)
    graph.invalidate()


def set_value(graph: Graph, tensor: str, dtype: np.dtype | None, shape: tuple[int, ...] | None) -> None:
    """Record the static type of a new activation tensor (no-op when the dtype is unknown)."""
    if dtype is not None:
        graph.values[tensor] = TensorInfo(np.dtype(dtype), shape)


def scalar(graph: Graph, tensor: str) -> float | None:
    """The value of a one-element constant ``tensor``, else ``None``."""
    v = const(graph, tensor)
    return float(np.asarray(v).reshape(-1)[0]) if v is not None and np.asarray(v).size == 1 else None


def other_input(node: Node, tensor: str) -> str:
    """The operand of binary ``node`` that is not ``tensor``."""
    return node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]


def reduce_axes(graph: Graph, node: Node, r: int, op: str = "ReduceMean") -> list[int] | None:
    """Sorted positive axes of a keepdims ``op`` node (attribute or opset-18 input), else ``None``."""
    if node.op_type != op or int(node.attr("keepdims", 1)) != 1:
        return None
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = const(graph, node.inputs[1])
        if axes is None:
            return None
        axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    else:
        axes = node.attr("axes")
    if not axes:
        return list(range(r))
    return sorted(positive_axes(list(axes), r))


def trailing_param(graph: Graph, node: Node | None, tensor: str, op: str, shape: tuple[int, ...], axis: int):
    """(per-element parameter of shape ``shape[axis:]``, the node) when ``node`` is ``op`` of ``tensor`` by a
    constant that varies only over the trailing axes from ``axis`` on; ``(None, None)`` otherwise."""
    if node is None or node.op_type != op or len(node.inputs) != 2 or tensor not in node.inputs:
        return None, None
    c = const(graph, other_input(node, tensor))
    if c is None or c.ndim > len(shape) or not np.issubdtype(c.dtype, np.floating):
        return None, None
    c = c.reshape((1,) * (len(shape) - c.ndim) + c.shape)
    if any(d != 1 for d in c.shape[:axis]) or any(d not in (1, s) for d, s in zip(c.shape, shape)):
        return None, None
    return np.broadcast_to(c[(0,) * axis], shape[axis:]).astype(np.float32), node


def replace_chain(graph: Graph, chain: list[Node], node: Node) -> None:
    """Replace the nodes of ``chain`` by ``node`` (which writes the chain's result, ``node.outputs``): the
    chain's other outputs are forgotten and ``node`` takes the place of the chain's last node."""
    last = graph.nodes.index(chain[-1])
    index = sum(1 for n in graph.nodes[:last] if all(n is not c for c in chain))
    for n in chain:
        for o in n.outputs:
            if o not in node.outputs:
                graph.values.pop(o, None)
    graph.nodes = [n for n in graph.nodes if all(n is not c for c in chain)]
    graph.add_node(node, index)
