"""Kernel registry of the float reference executor, plus helpers shared by the kernel modules.

A kernel is ``fn(node, inputs) -> outputs``: ``inputs`` holds one torch tensor per node input
(``None`` for an absent optional input, initializers included), ``outputs`` one tensor per node
output. Kernels follow ONNX semantics (https://onnx.ai/onnx/operators/) for every opset >= 7;
the few facts that depend on the opset read :func:`current_opset`.

While :func:`espq.sim.float.executor.run_graph` runs, :func:`static_shape` answers the graph's
static (batch-1) shape of a tensor, so shape kernels (Reshape, Squeeze) can tell a batch dimension
that grew at run time from a genuine leading 1.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from espq.errors import UnsupportedOpError
from espq.ir.graph import Graph, Node

KernelFn = Callable[[Node, list[torch.Tensor | None]], list[torch.Tensor]]

KERNELS: dict[str, KernelFn] = {}

_GRAPH: contextvars.ContextVar[Graph | None] = contextvars.ContextVar("espq_float_graph", default=None)


def register(*op_types: str) -> Callable[[KernelFn], KernelFn]:
    """Decorator registering ``fn`` as the float kernel of every op type in ``op_types``."""

    def deco(fn: KernelFn) -> KernelFn:
        for op in op_types:
            KERNELS[op] = fn
        return fn

    return deco


# ---------------------------------------------------------------------------- run context
def set_current_graph(graph: Graph | None) -> contextvars.Token:
    """Make ``graph`` the graph :func:`static_shape`/:func:`current_opset` answer for (executor use)."""
    return _GRAPH.set(graph)


def reset_current_graph(token: contextvars.Token) -> None:
    _GRAPH.reset(token)


def current_opset() -> int:
    """Opset of the graph being executed (18 when called outside a run)."""
    g = _GRAPH.get()
    return 18 if g is None else int(g.opset)


def static_shape(tensor: str) -> tuple[int, ...] | None:
    """Static shape of ``tensor`` in the graph being executed, ``None`` if unknown."""
    g = _GRAPH.get()
    if g is None or not tensor:
        return None
    return g.shape(tensor)


# ---------------------------------------------------------------------------- helpers
_ONNX_TO_TORCH: dict[int, torch.dtype] = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    4: torch.int32,  # uint16: torch has no general uint16 arithmetic
    5: torch.int16,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
    12: torch.int64,  # uint32
    13: torch.int64,  # uint64 (values above 2**63 are not representable)
    16: torch.bfloat16,
}


def onnx_dtype_to_torch(elem_type: int, node: Node) -> torch.dtype:
    """torch dtype used for ONNX TensorProto element type ``elem_type``."""
    try:
        return _ONNX_TO_TORCH[int(elem_type)]
    except KeyError:
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_type}) uses ONNX element type {elem_type}, which the float "
            "executor cannot represent in torch; change the model to use a numeric type"
        ) from None


def numpy_to_torch(arr: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """Convert a numpy array to a torch tensor (unsigned types torch lacks become int32/int64)."""
    a = np.asarray(arr)
    if a.dtype == np.uint16:
        a = a.astype(np.int32)
    elif a.dtype in (np.uint32, np.uint64):
        a = a.astype(np.int64)
    elif a.dtype.kind in "USO":
        raise UnsupportedOpError(f"string/object tensors are not supported by the float executor ({a.dtype})")
    return torch.from_numpy(np.array(a, copy=True)).to(device)


def ints(t: torch.Tensor | None) -> list[int] | None:
    """A 0-/1-D integer tensor as a python list (``None`` stays ``None``)."""
    if t is None:
        return None
    return [int(v) for v in t.reshape(-1).tolist()]


def scalar(t: torch.Tensor | None, default: Any = None) -> Any:
    """A one-element tensor as a python number (``default`` if ``t`` is None or empty)."""
    if t is None or t.numel() == 0:
        return default
    return t.reshape(-1)[0].item()


def axis_of(axis: int, rank: int) -> int:
    """Normalise a possibly negative ``axis`` for a tensor of rank ``rank``."""
    return axis + rank if axis < 0 else axis


def attr_or_input(
    node: Node, inputs: Sequence[torch.Tensor | None], name: str, index: int, default: Any = None
) -> Any:
    """An integer-list parameter given as attribute ``name`` (old opsets) or input ``index`` (new)."""
    if name in node.attrs:
        return node.attrs[name]
    if index < len(inputs) and inputs[index] is not None:
        return ints(inputs[index])
    return default


def need(inputs: Sequence[torch.Tensor | None], count: int, node: Node) -> None:
    """Raise if fewer than ``count`` mandatory inputs are present."""
    if len(inputs) < count or any(inputs[i] is None for i in range(count)):
        raise UnsupportedOpError(
            f"node '{node.name}' ({node.op_type}) needs {count} input(s), got "
            f"{sum(1 for x in inputs if x is not None)}; check the model with onnx.checker"
        )
