"""Turn ``MatMul`` (2-D activation × constant [K, N]) [+ constant Add] into ``Gemm``.

The Gemm keeps B as stored, [K, N], with ``transB = 0``: no weight copy, and it is the form
ESP-DL's Gemm requires (transB absent/0, weight [C, N]; esp_dl_facts.md §2.5).
Only a 2-D left input fires: Gemm is defined for 2-D A only.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, rank, skip, sole_consumer, take_over_output

logger = logging.getLogger(__name__)


def _bias_after(graph: Graph, mm: Node, n: int) -> tuple[Node, np.ndarray] | None:
    """The constant Add reading ``mm``'s output (as the only reader) and its [N] addend."""
    add = sole_consumer(graph, mm.outputs[0])
    if add is None or add.op_type != "Add" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] == mm.outputs[0] else add.inputs[0]
    c = const(graph, other)
    if c is None or c.ndim > 2 or not np.issubdtype(c.dtype, np.floating):
        return None
    shape = (1,) * (2 - c.ndim) + tuple(c.shape)
    if shape[0] != 1 or shape[1] not in (1, n):
        return None  # would broadcast the output along M, or is not per-column
    return add, np.broadcast_to(c.reshape(-1), (n,)) if c.size == 1 else c.reshape(n)


def matmul_add_to_gemm(graph: Graph) -> int:
    """Replace ``MatMul(A, B)`` [→ ``Add(·, c)``] by ``Gemm(A, B[, c])``. Returns #MatMul nodes replaced.

    * matches: MatMul whose B is a constant 2-D [K, N] and whose A is known to be 2-D;
    * absorbs: a following Add (sole reader) of a constant broadcastable to [N] ([N], [1,N], scalar);
    * produces: ``Gemm(A, B, c)`` (transB=0, alpha=beta=1) writing the Add's output (or the MatMul's).
    """
    count = 0
    for mm in list(graph.nodes):
        if mm.op_type != "MatMul" or mm.domain not in ("", "ai.onnx"):
            continue
        b = const(graph, mm.inputs[1])
        if b is None or b.ndim != 2 or not np.issubdtype(b.dtype, np.floating):
            skip(logger, mm, "right operand is not a constant 2-D float matrix")
            continue
        if const(graph, mm.inputs[0]) is not None:
            skip(logger, mm, "left operand is constant (left to constant folding)")
            continue
        if rank(graph, mm.inputs[0]) != 2:
            skip(logger, mm, f"left operand rank is {rank(graph, mm.inputs[0])}, not 2")
            continue
        mm.op_type = "Gemm"
        mm.attrs = {"transA": 0, "transB": 0, "alpha": 1.0, "beta": 1.0}
        bias = _bias_after(graph, mm, int(b.shape[1]))
        if bias is not None:
            add, vec = bias
            mm.inputs = [
                mm.inputs[0],
                mm.inputs[1],
                add_initializer(graph, f"{mm.name}_bias", vec.astype(b.dtype)),
            ]
            take_over_output(graph, mm, add)
        graph.invalidate()
        count += 1
    return count
