"""Learn missing static shapes with ONNX shape inference (``data_prop=True``).

Not a rewrite: it fills ``graph.values`` for tensors whose shape was unknown, which lets the
shape-dependent passes (fold_shape_ops, normalize_attributes' Softmax conversion, matmul_add_to_gemm)
fire in the next round after constant folding has resolved Shape→...→Reshape chains. A tensor whose
inferred static shape is beyond :mod:`espq.ir.limits` (a Resize scale of 1e6, a Pad of 2^40 on an
activation) is a ShapeError here, before any executor allocates it.
"""

from __future__ import annotations

import logging

import onnx

from espq.errors import ShapeError
from espq.ir.graph import Graph, TensorInfo
from espq.ir.limits import size_message, too_large
from espq.ir.onnx_io import _dtype_of, _shape_of, graph_to_onnx

logger = logging.getLogger(__name__)


def infer_shapes(graph: Graph) -> int:
    """Fill unknown shapes in ``graph.values``; returns how many tensors got a static shape.

    Known shapes are never overwritten. Ops unknown to ONNX (e.g. ESP-DL ``Swish``) are skipped by
    the inference; their recorded output shapes are used as given. Inference errors are logged at
    debug level and leave the graph unchanged.
    """
    try:
        inferred = onnx.shape_inference.infer_shapes(graph_to_onnx(graph), data_prop=True)
    except Exception as exc:  # onnx raises InferenceError and others
        logger.debug("shape inference failed on graph '%s': %s", graph.name, exc)
        return 0
    learned = 0
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.name in graph.initializers or not vi.type.HasField("tensor_type"):
            continue
        shape = _shape_of(vi)
        if shape is not None and all(isinstance(d, int) for d in shape) and too_large(shape):
            producer = graph.producer(vi.name)
            where = f" (output of node '{producer.name}', {producer.op_type})" if producer else ""
            raise ShapeError(size_message(f"tensor '{vi.name}'{where}", shape))
        cur = graph.values.get(vi.name)
        if shape is None or (cur is not None and cur.shape is not None):
            continue
        graph.values[vi.name] = TensorInfo(_dtype_of(vi.type.tensor_type.elem_type), shape)
        learned += 1
    return learned
