"""Float reference executor: runs an :class:`espq.ir.Graph` with torch, any batch size.

* :func:`run_float` - one stateless run, numpy in / numpy out.
* :class:`FloatSession` - repeated runs sharing StreamingCache history (``reset()`` clears it).
* :func:`espq.sim.float.executor.run_graph` - the torch-level engine (hooks, kernel overrides).

Notes: ``LUT`` nodes evaluate their ``original_op_type`` (the table itself is ignored);
``RequantizeLinear`` is the identity; ``StreamingCache`` concatenates window_size - 1 cached frames
(zeros at first) with its input along ``frame_axis``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from espq.errors import InputDataError
from espq.ir.graph import Graph
from espq.sim.float.executor import Hook, run_graph
from espq.sim.float.kernels_shape import StreamingState
from espq.sim.float.registry import KERNELS, KernelFn, register

__all__ = ["FloatSession", "KERNELS", "KernelFn", "prepare_inputs", "register", "run_float", "run_graph"]

InputsLike = Any  # np.ndarray | torch.Tensor | Sequence[...] | Mapping[str, ...]


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - defensive
        raise InputDataError(f"input '{name}' cannot be converted to an array: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise InputDataError(
            f"input '{name}' has dtype {arr.dtype}; pass a numeric numpy array or torch tensor"
        )
    return torch.from_numpy(np.array(arr, copy=True))


def prepare_inputs(graph: Graph, inputs: InputsLike) -> dict[str, torch.Tensor]:
    """Validate and convert ``inputs`` (array, list in graph-input order, or dict by name).

    Checks count, names, rank and the non-batch dimensions against ``graph.values``; float64 (and
    other numeric) inputs are cast to the graph input's dtype.
    """
    names = list(graph.inputs)
    if isinstance(inputs, Mapping):
        unknown = [k for k in inputs if k not in names]
        missing = [n for n in names if n not in inputs]
        if unknown or missing:
            raise InputDataError(
                f"graph '{graph.name}' expects inputs {names}; got {list(inputs)} "
                f"(unknown: {unknown}, missing: {missing})"
            )
        items = {n: inputs[n] for n in names}
    elif isinstance(inputs, (list, tuple)):
        if len(inputs) != len(names):
            raise InputDataError(
                f"graph '{graph.name}' expects {len(names)} input(s) {names}; got a list of {len(inputs)}"
            )
        items = dict(zip(names, inputs))
    else:
        if len(names) != 1:
            raise InputDataError(
                f"graph '{graph.name}' has {len(names)} inputs {names}; pass a list or a dict, not one array"
            )
        items = {names[0]: inputs}
    feeds: dict[str, torch.Tensor] = {}
    for name, value in items.items():
        t = _to_tensor(value, name)
        info = graph.values.get(name)
        if info is not None and info.shape is not None:
            expected = tuple(info.shape)
            got = tuple(t.shape)
            if len(got) != len(expected) or got[1:] != expected[1:]:
                raise InputDataError(
                    f"input '{name}' of graph '{graph.name}': expected shape {expected} (any batch size), "
                    f"got {got}"
                )
        if info is not None:
            target = torch.from_numpy(np.zeros(0, dtype=info.dtype)).dtype
            if t.dtype != target:
                t = t.to(target)
        elif t.dtype == torch.float64:
            t = t.to(torch.float32)
        feeds[name] = t
    return feeds


class FloatSession:
    """Repeated float runs of one graph that keep StreamingCache state between calls."""

    def __init__(self, graph: Graph, device: str | torch.device = "cpu"):
        self.graph = graph
        self.device = device
        self.state = StreamingState()

    def reset(self) -> None:
        """Clear every StreamingCache history (like ESP-DL ``Model::reset``)."""
        self.state.reset()

    def run_torch(
        self,
        feeds: Mapping[str, torch.Tensor],
        outputs: list[str] | None = None,
        *,
        hook: Hook | None = None,
        kernels: Mapping[str, KernelFn] | None = None,
    ) -> dict[str, torch.Tensor]:
        """:func:`run_graph` with this session's StreamingCache state."""
        table: dict[str, KernelFn] = {"StreamingCache": self.state.kernel}
        if kernels:
            table.update(kernels)
        return run_graph(self.graph, feeds, outputs, device=self.device, hook=hook, kernels=table)

    def run(self, inputs: InputsLike, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Validate ``inputs`` (see :func:`prepare_inputs`), run, return numpy arrays by name."""
        feeds = prepare_inputs(self.graph, inputs)
        res = self.run_torch(feeds, None if outputs is None else list(outputs))
        return {k: v.detach().cpu().numpy() for k, v in res.items()}


def run_float(
    graph: Graph, inputs: InputsLike, outputs: Sequence[str] | None = None, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """Run ``graph`` in float on ``inputs`` (fresh StreamingCache state) and return numpy arrays.

    ``inputs``: one array (single-input graphs), a list in graph-input order, or a dict by name
    (numpy or torch, batch size may exceed the graph's static 1). Returns the graph outputs, or
    the tensors named in ``outputs`` (intermediates allowed).
    """
    return FloatSession(graph, device).run(inputs, outputs)
