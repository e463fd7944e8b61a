"""Fold a constant ``Add`` / ``Sub`` after Conv / ConvTranspose / Gemm into the bias.

ESP-PPQ FUSE_BIAS_ADD (esp_ppq_facts.md §3.2 item 4) does this for Add when the producer has no
bias; here an existing bias is summed with the constant, and ``x − c`` is handled as ``x + (−c)``.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, skip, sole_consumer, take_over_output

logger = logging.getLogger(__name__)

PRODUCERS = frozenset({"Conv", "ConvTranspose", "Gemm"})


def _out_channels(graph: Graph, prod: Node) -> int | None:
    w = const(graph, prod.inputs[1])
    if w is None:
        return None
    if prod.op_type == "Conv":
        return int(w.shape[0])
    if prod.op_type == "ConvTranspose":
        return int(w.shape[1]) * int(prod.attrs.get("group", 1))
    return int(w.shape[0] if prod.attrs.get("transB", 0) else w.shape[1])


def per_channel(c: np.ndarray, out_rank: int, n: int) -> np.ndarray | None:
    """``c`` as an [n] vector when adding it to a rank-``out_rank`` output with n channels on axis 1
    only broadcasts along that axis (shapes like [], [n], [1,n,1,1]); else ``None``."""
    if c.ndim > out_rank:
        return None
    shape = (1,) * (out_rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, n):
        return None
    return np.broadcast_to(c.reshape(-1), (n,)) if c.size == 1 else c.reshape(n)


def _match(graph: Graph, node: Node) -> tuple[Node, np.ndarray] | str:
    """(producer, per-channel addend) or the reason the node does not match."""
    sign = 1.0
    if const(graph, node.inputs[1]) is not None and const(graph, node.inputs[0]) is None:
        x, c = node.inputs[0], const(graph, node.inputs[1])
    elif node.op_type == "Add" and const(graph, node.inputs[0]) is not None:
        x, c = node.inputs[1], const(graph, node.inputs[0])
    else:
        return "no constant operand (or constant minus activation)"
    if node.op_type == "Sub":
        sign = -1.0
    prod = graph.producer(x)
    if prod is None or prod.op_type not in PRODUCERS or prod.domain not in ("", "ai.onnx"):
        return "not fed by Conv/ConvTranspose/Gemm"
    if sole_consumer(graph, x) is not node:
        return f"'{x}' has other readers or is a graph output"
    n = _out_channels(graph, prod)
    if n is None:
        return "producer weight is not constant"
    # Conv-like outputs have the weight's rank; Gemm outputs are 2-D
    out_rank = 2 if prod.op_type == "Gemm" else const(graph, prod.inputs[1]).ndim
    if not np.issubdtype(c.dtype, np.floating):
        return f"constant dtype {c.dtype} is not floating point"
    vec = per_channel(c, out_rank, n)
    if vec is None:
        return f"constant of shape {list(c.shape)} is not per-output-channel"
    bias = prod.inputs[2] if len(prod.inputs) > 2 else ""
    if bias and const(graph, bias) is None:
        return f"bias '{bias}' is not constant"
    return prod, sign * vec.astype(np.float64)


def fuse_add_to_bias(graph: Graph) -> int:
    """Move constant per-channel Add/Sub into the producer's bias. Returns #Add/Sub nodes removed.

    * matches: ``Conv|ConvTranspose|Gemm → Add(x, c)`` / ``Add(c, x)`` / ``Sub(x, c)``;
    * fires when: ``c`` is constant and broadcasts only along the output-channel axis (scalar,
      [C], [1,C,1,1]...), the producer output is read only by the Add/Sub, weights/bias are constant;
    * produces: the producer with bias ``b + c`` (Gemm: ``beta·C + c``, beta set to 1), writing the
      Add's output tensor.
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type not in ("Add", "Sub") or len(node.inputs) != 2:
            continue
        m = _match(graph, node)
        if isinstance(m, str):
            skip(logger, node, m)
            continue
        prod, vec = m
        w = const(graph, prod.inputs[1])
        b = const(graph, prod.inputs[2]) if len(prod.inputs) > 2 else None
        if prod.op_type == "Gemm":
            old = 0.0 if b is None else float(prod.attrs.get("beta", 1.0)) * b.astype(np.float64)
            new_b = old + vec  # C may be [N], [1,N] or [M,N]: broadcasting keeps it valid
            prod.attrs["beta"] = 1.0
        else:
            new_b = (0.0 if b is None else b.astype(np.float64).reshape(-1)) + vec
        name = add_initializer(graph, f"{prod.name}_bias", np.asarray(new_b).astype(w.dtype))
        prod.inputs = [prod.inputs[0], prod.inputs[1], name]
        take_over_output(graph, prod, node)
        count += 1
    return count
