"""Activation memory of an ESP-DL model: buffer lifetimes as ESP-DL's planner keeps them (§5.1).

ESP-DL's greedy planner keeps each activation from its producer to its last consumer (graph outputs never
freed), sizes rounded up to 16 bytes, and lets "changed buffer" ops (:data:`Buffer.INPLACE` in the op-facts
table) overwrite an input that dies at the node and "unchanged buffer" ops (:data:`Buffer.VIEW`) alias their
input. ``activation_peak_bytes`` is the largest sum of simultaneously live buffers (a lower bound of any
arena), ``activation_arena_bytes`` a greedy-by-size first-fit offset plan over the same buffers (ESP-DL's
exact placement order is not documented, so it may differ by fragmentation). Per-op scratch buffers are not
counted. Works on any object shaped like :class:`~espq.espdl.model.EspdlModel` (this layer does not import
the file format); ``espq inspect`` reports it (:mod:`espq.espdl.inspect` imports it from here).
"""

from __future__ import annotations

import math
from typing import Any

import onnx.helper

from espq.ir.op_facts import Buffer, ops_with

#: ops that may overwrite an input buffer that dies at the node (§5.1 "changed buffer").
CHANGED_BUFFER_OPS = ops_with(buffer=Buffer.INPLACE)
#: ops whose output is a view of their input (§5.1 "unchanged buffer").
VIEW_OPS = ops_with(buffer=Buffer.VIEW)


def itemsize(elem_type: int) -> int | None:
    """Bytes per element of an ONNX TensorProto data type code (the `.espdl` codes), None if unknown."""
    try:
        return int(onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, ValueError, TypeError):
        return None


def _bytes_of(v: Any) -> int | None:
    size = itemsize(v.elem_type)
    if v.shape is None or any(not isinstance(d, int) for d in v.shape) or size is None:
        return None
    return -(-math.prod(v.shape) * size // 16) * 16


def activation_memory(model: Any) -> dict[str, int]:
    """Activation memory of an :class:`~espq.espdl.model.EspdlModel` (module docstring).

    Keys: ``activation_peak_bytes``, ``activation_arena_bytes``, ``activation_buffers``.
    """
    g = model.graph
    vi = {v.name: v for v in g.value_info}
    outputs = {v.name for v in g.outputs}
    last_use: dict[str, int] = {}
    for i, node in enumerate(g.nodes):
        for t in node.inputs:
            if t in vi and t not in g.initializers:
                last_use[t] = i
    end_of_graph = len(g.nodes)
    buffer_of: dict[str, int] = {}
    buffers: list[list[int]] = []  # [size, first step, last step]

    def new_buffer(t: str, step: int) -> None:
        size = _bytes_of(vi[t])
        if size is None:
            return
        buffer_of[t] = len(buffers)
        buffers.append([size, step, step])

    for v in g.inputs:
        if v.name in vi:
            new_buffer(v.name, 0)
    for i, node in enumerate(g.nodes):
        src = node.inputs[0] if node.inputs else ""
        for k, t in enumerate(node.outputs):
            if t not in vi:
                continue
            size = _bytes_of(vi[t])
            b = buffer_of.get(src) if k == 0 else None
            reuse = (
                b is not None
                and size is not None
                and src not in outputs
                and buffers[b][0] >= size
                and (
                    node.op_type in VIEW_OPS
                    or (node.op_type in CHANGED_BUFFER_OPS and last_use.get(src) == i and src not in outputs)
                )
            )
            if reuse:
                buffer_of[t] = b  # type: ignore[assignment]
            else:
                new_buffer(t, i)
    for t, b in buffer_of.items():
        end = end_of_graph if t in outputs else max(last_use.get(t, -1), buffers[b][1])
        buffers[b][2] = max(buffers[b][2], end)
    steps = range(end_of_graph + 1)
    peak = max((sum(s for s, a, z in buffers if a <= i <= z) for i in steps), default=0)
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    arena = 0
    for size, a, z in sorted(buffers, key=lambda x: (-x[0], x[1])):
        offset = 0
        for o, s, _a, _z in sorted(p for p in placed if not (p[3] < a or z < p[2])):
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, a, z))
        arena = max(arena, offset + size)
    return {
        "activation_peak_bytes": peak,
        "activation_arena_bytes": arena,
        "activation_buffers": len(buffers),
    }


__all__ = ["CHANGED_BUFFER_OPS", "VIEW_OPS", "activation_memory", "itemsize"]
