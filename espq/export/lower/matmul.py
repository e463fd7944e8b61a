"""Dynamic MatMul right operand (esp_dl_facts.md §2.5, esp_ppq_facts.md §3.7 step 3
``InsertPreNodeOfMatMulPattern``): ESP-DL reads operand 1 of a quantized MatMul in the Gemm weight byte
order, so when it is an activation [..., C, N] the exporter inserts nodes that produce that order at
run time (the tensor keeps its original dims):

* plain layout (C chips) or N < a: Transpose(last two) → Reshape back (data = [..., N, C]);
* blocked, N % a == 0: Reshape [..., C, N/a, a] → Transpose [..., N/a, C, a] → Reshape back;
* blocked, N % a ≠ 0: Transpose(last two) → {Slice rows [0, Na) → Reshape [..., N/a, a, C] → Transpose
  [..., N/a, C, a] → Reshape [..., Na, C]} and Slice rows [Na, N) → Concat → Reshape back.

Perms and axes are written non-negative (ESP-PPQ writes negative Transpose perms).
"""

from __future__ import annotations

import numpy as np

from espq.export.lower.state import QUANT_TYPE, ExportState
from espq.ir import Node
from espq.ir.spec import F32


class _Chain:
    def __init__(self, state: ExportState, consumer: Node, src: str):
        self.s, self.consumer, self.src = state, consumer, src
        self.spec = state.specs.get(src)
        self.qt = state.quant_type(consumer)

    def add(self, op: str, inputs: list[str], shape: list[int], attrs: dict | None = None) -> str:
        out = self.s.new_tensor(f"{self.src}_{op.lower()}", self.src, self.spec)
        self.s.graph.values[out].shape = tuple(int(d) for d in shape)
        name = self.s.graph.unique_name(f"{self.consumer.name}_pre_{op}")
        attrs = dict(attrs or {})
        attrs[QUANT_TYPE] = self.qt
        self.s.insert_before(self.consumer, Node(name, op, inputs, [out], attrs))
        return out

    def const(self, base: str, values: list[int]) -> str:
        return self.s.new_initializer(f"{self.consumer.name}_{base}", np.array(values, dtype=np.int64))

    def reshape(self, x: str, shape: list[int]) -> str:
        return self.add("Reshape", [x, self.const("shape", shape)], shape, {"allowzero": 0})

    def transpose(self, x: str, perm: list[int], shape: list[int]) -> str:
        return self.add("Transpose", [x], [shape[p] for p in perm], {"perm": perm})

    def slice(self, x: str, axis: int, start: int, end: int, shape: list[int]) -> str:
        out_shape = list(shape)
        out_shape[axis] = end - start
        ins = [x, self.const("starts", [start]), self.const("ends", [end]), self.const("axes", [axis]),
               self.const("steps", [1])]  # fmt: skip
        return self.add("Slice", ins, out_shape)


def _swap_last(r: int) -> list[int]:
    return list(range(r - 2)) + [r - 1, r - 2]


def prepare_dynamic_matmul(state: ExportState) -> int:
    """Insert the operand-1 preparation nodes; returns the number of MatMuls rewritten."""
    g = state.graph
    done = 0
    for node in list(g.nodes):
        if node.op_type != "MatMul" or state.quant_type(node) == F32:
            continue
        b = node.inputs[1]
        shape = g.shape(b)
        if not state.is_activation(b) or shape is None or len(shape) < 2:
            continue
        shape = [int(d) for d in shape]
        r = len(shape)
        batch, c, n = shape[:-2], shape[-2], shape[-1]
        bits = state.specs[b].bits if b in state.specs else 8
        a = state.target.weight_block.get(bits, 0) if state.target.weight_layout == "blocked" else 0
        ch = _Chain(state, node, b)
        if a == 0 or n < a:
            t = ch.transpose(b, _swap_last(r), shape)
            out = ch.reshape(t, shape)
        elif n % a == 0:
            x = ch.reshape(b, batch + [c, n // a, a])
            x = ch.transpose(x, list(range(r - 2)) + [r - 1, r - 2, r], batch + [c, n // a, a])
            out = ch.reshape(x, shape)
        else:
            na = n // a * a
            t = ch.transpose(b, _swap_last(r), shape)
            nc = batch + [n, c]
            head = ch.slice(t, r - 2, 0, na, nc)
            head = ch.reshape(head, batch + [n // a, a, c])
            head = ch.transpose(head, list(range(r - 2)) + [r - 2, r, r - 1], batch + [n // a, a, c])
            head = ch.reshape(head, batch + [na, c])
            tail = ch.slice(t, r - 2, na, n, nc)
            cat = ch.add("Concat", [head, tail], nc, {"axis": r - 2})
            out = ch.reshape(cat, shape)
        node.inputs[1] = out
        g.invalidate()
        done += 1
    return done
