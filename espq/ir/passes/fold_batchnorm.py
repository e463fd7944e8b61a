"""Fold ``BatchNormalization`` into the Conv / ConvTranspose / Gemm that feeds it.

ESP-PPQ FUSE_BN (esp_ppq_facts.md §3.2 item 5): with s = γ/√(var+ε),
W' = W·s along the output-channel axis and b' = (b − mean)·s + β.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, skip, sole_consumer, take_over_output

logger = logging.getLogger(__name__)

PRODUCERS = frozenset({"Conv", "ConvTranspose", "Gemm"})


def bn_scale_shift(graph: Graph, bn: Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) with BN(x) = x·scale + shift per channel, or ``None`` if a parameter is not constant."""
    params = [const(graph, t) for t in bn.inputs[1:5]]
    if len(params) != 4 or any(p is None for p in params):
        return None
    gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
    eps = float(bn.attrs.get("epsilon", 1e-5))
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def _bn_problem(graph: Graph, bn: Node) -> str | None:
    if bn.attrs.get("training_mode", 0):
        return "training_mode=1"
    if any(o and (graph.consumers(o) or o in graph.outputs) for o in bn.outputs[1:]):
        return "its running-statistics outputs are used"
    return None


def _fold(graph: Graph, prod: Node, scale: np.ndarray, shift: np.ndarray) -> str | None:
    """Rewrite ``prod``'s weight and bias; returns a reason when it cannot."""
    w = const(graph, prod.inputs[1])
    if w is None:
        return f"weight '{prod.inputs[1]}' is not constant"
    bias_name = prod.inputs[2] if len(prod.inputs) > 2 else ""
    b = const(graph, bias_name)
    if bias_name and b is None:
        return f"bias '{bias_name}' is not constant"
    dtype = w.dtype
    w64 = w.astype(np.float64)
    n = scale.size
    if prod.op_type == "Conv":
        if w.shape[0] != n:
            return f"weight has {w.shape[0]} output channels, BN has {n}"
        new_w = w64 * scale.reshape((n,) + (1,) * (w.ndim - 1))
        b64 = np.zeros(n) if b is None else b.astype(np.float64).reshape(-1)
        new_b = b64 * scale + shift
    elif prod.op_type == "ConvTranspose":
        g = int(prod.attrs.get("group", 1))
        c_in, c_out_g = w.shape[0], w.shape[1]
        if c_out_g * g != n:
            return f"weight gives {c_out_g * g} output channels, BN has {n}"
        # W [C_in, C_out/g, k...]: output channel o = grp*(C_out/g) + j lives at W[grp*(C_in/g)+i, j]
        grouped = w64.reshape((g, c_in // g, c_out_g) + w.shape[2:])
        s = scale.reshape((g, 1, c_out_g) + (1,) * (w.ndim - 2))
        new_w = (grouped * s).reshape(w.shape)
        b64 = np.zeros(n) if b is None else b.astype(np.float64).reshape(-1)
        new_b = b64 * scale + shift
    else:  # Gemm: Y = alpha·A'·B' + beta·C, output column n
        if w.ndim != 2:
            return "Gemm B is not 2-D"
        axis = 0 if prod.attrs.get("transB", 0) else 1
        if w.shape[axis] != n:
            return f"Gemm has {w.shape[axis]} output columns, BN has {n}"
        new_w = w64 * (scale[:, None] if axis == 0 else scale[None, :])
        beta = float(prod.attrs.get("beta", 1.0))
        c = np.zeros(n) if b is None else beta * b.astype(np.float64)
        new_b = c * scale + shift  # broadcasts over [N], [1,N] or [M,N] C
        prod.attrs["beta"] = 1.0
    w_name = add_initializer(graph, f"{prod.name}_weight", new_w.astype(dtype))
    b_name = add_initializer(graph, f"{prod.name}_bias", new_b.astype(dtype))
    prod.inputs = [prod.inputs[0], w_name, b_name]
    return None


def fold_batchnorm(graph: Graph) -> int:
    """Fold BatchNormalization into a preceding Conv/ConvTranspose/Gemm. Returns #BN nodes folded.

    * matches: ``Conv|ConvTranspose|Gemm → BatchNormalization`` on the BN's data input;
    * fires when: the producer's output is read by the BN only (and is not a graph output), BN is in
      inference mode with constant parameters, and the producer's weight/bias are constant;
    * produces: the producer with new weight/bias initializers ``<op>_weight``/``<op>_bias``,
      writing the BN's output tensor.
    """
    count = 0
    for bn in list(graph.nodes):
        if bn.op_type != "BatchNormalization":
            continue
        prod = graph.producer(bn.inputs[0])
        if prod is None or prod.op_type not in PRODUCERS or prod.domain not in ("", "ai.onnx"):
            skip(logger, bn, "not fed by Conv/ConvTranspose/Gemm")
            continue
        if sole_consumer(graph, bn.inputs[0]) is not bn:
            skip(logger, bn, f"producer '{prod.name}' output has other readers or is a graph output")
            continue
        reason = _bn_problem(graph, bn)
        ss = bn_scale_shift(graph, bn)
        if reason is None and ss is None:
            reason = "BN parameters are not constant"
        if reason is None:
            reason = _fold(graph, prod, *ss)
        if reason is not None:
            skip(logger, bn, reason)
            continue
        bn.outputs = bn.outputs[:1]
        take_over_output(graph, prod, bn)
        count += 1
    return count
