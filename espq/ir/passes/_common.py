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
