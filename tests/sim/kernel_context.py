"""Helpers for the integer-kernel unit tests: run one registered kernel on a synthetic one-node context."""

from __future__ import annotations

import numpy as np

from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor
from espq.espdl.schema import TensorDataType
from espq.sim.integer.base import INT_KERNELS, IntContext, QTensor
from espq.sim.integer.runner import load_kernels
from espq.targets import get_target

_DT = {
    np.dtype(np.int8): TensorDataType.INT8,
    np.dtype(np.int16): TensorDataType.INT16,
    np.dtype(np.int32): TensorDataType.INT32,
    np.dtype(np.int64): TensorDataType.INT64,
    np.dtype(np.float32): TensorDataType.FLOAT,
}


def param(name: str, values, exponent: int = 0) -> EspdlTensor:
    """An initializer holding ``values`` (dtype kept) with one exponent."""
    arr = np.asarray(values)
    return EspdlTensor.from_array(name, arr, int(_DT[arr.dtype]), [exponent])


def run_op(
    op_type: str,
    inputs: list[QTensor | None],
    target: str = "esp32p4",
    attrs: dict | None = None,
    params: dict[int, EspdlTensor] | None = None,
    out_exponents: list[int] | None = None,
    out_dtypes: list | None = None,
    initializers: dict[str, EspdlTensor] | None = None,
) -> list[QTensor]:
    """Run the registered kernel of ``op_type`` on one synthetic node."""
    load_kernels()
    graph = EspdlGraph(name="test", initializers=dict(initializers or {}))
    node = EspdlNode(
        name=f"{op_type}_0", op_type=op_type, inputs=[], outputs=["y"], attributes=dict(attrs or {})
    )
    graph.nodes.append(node)
    ctx = IntContext(
        target=get_target(target),
        node=node,
        model=EspdlModel(graph=graph),
        params=dict(params or {}),
        out_exponents=list(out_exponents or []),
        out_dtypes=[np.dtype(d) for d in (out_dtypes or [])],
    )
    return INT_KERNELS[op_type](ctx, inputs)


def q(values, exponent: int = 0, dtype=np.int8) -> QTensor:
    """A quantized tensor of ``values`` (as ``dtype``) with one exponent."""
    return QTensor(np.asarray(values, dtype=dtype), exponent)
