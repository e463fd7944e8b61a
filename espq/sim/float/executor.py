"""Run an :class:`espq.ir.Graph` in float with torch, one registered kernel per op type."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

import torch

from espq.errors import EspqError, InputDataError, ShapeError, UnsupportedOpError
from espq.ir.graph import Graph, Node
from espq.sim.float import registry
from espq.sim.float.registry import KERNELS, KernelFn

Hook = Callable[[Node, int, torch.Tensor], torch.Tensor]


def load_kernels() -> None:
    """Import the kernel modules (their ``@register`` decorators fill :data:`KERNELS`); call it before
    reading :data:`KERNELS` directly (running a graph does it)."""
    from espq.sim.float import (  # noqa: F401
        kernels_conv,
        kernels_elementwise,
        kernels_nn,
        kernels_reduce,
        kernels_resize,
        kernels_rnn,
        kernels_shape,
        kernels_tensor,
    )


def _shapes(values: list[torch.Tensor | None]) -> str:
    return ", ".join(
        "None" if v is None else f"{tuple(v.shape)}:{str(v.dtype).replace('torch.', '')}" for v in values
    )


def _kernel_table(graph: Graph, kernels: Mapping[str, KernelFn] | None) -> dict[str, KernelFn]:
    load_kernels()
    table: dict[str, KernelFn] = dict(KERNELS)
    if kernels:
        table.update(kernels)
    missing_ops: dict[str, str] = {}
    for node in graph.nodes:
        if node.op_type not in table:
            missing_ops.setdefault(node.op_type, node.name)
    if missing_ops:
        listing = ", ".join(f"'{op}' (node '{name}')" for op, name in missing_ops.items())
        raise UnsupportedOpError(
            f"graph '{graph.name}': op type(s) {listing} have no float kernel in espq; replace the op in "
            "the model (e.g. with onnxslim or by re-exporting) or open an issue asking for it"
        )
    return table


def _last_use(graph: Graph) -> dict[str, int]:
    """Index of the last node reading each tensor, for freeing."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name:
                last_use[name] = i
    return last_use


def run_graph(
    graph: Graph,
    feeds: Mapping[str, torch.Tensor],
    outputs: list[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    hook: Hook | None = None,
    kernels: Mapping[str, KernelFn] | None = None,
    grad: bool = False,
) -> dict[str, torch.Tensor]:
    """Execute ``graph`` on ``feeds`` (graph input name -> tensor, any batch size).

    Returns the tensors named in ``outputs`` (default: the graph outputs); any graph input,
    initializer or intermediate tensor may be requested. ``hook(node, output_index, tensor)`` is
    called on every node output right after its kernel and may return a replacement tensor; it
    sees integer/bool tensors too (Shape, Gather indices...) and outputs that are views of inputs
    (Reshape, Identity), so it must return a new tensor rather than modify one in place.
    ``kernels`` overrides registry entries (op_type -> kernel) for this run only. Tensors are freed
    after their last consumer unless requested. ``grad``: keep autograd on (the caller's grad mode
    applies), so outputs can be differentiated w.r.t. feeds or tensors the kernels use; by default the
    run is under ``torch.no_grad()``.
    """
    wanted = list(graph.outputs if outputs is None else outputs)
    missing_feeds = [n for n in graph.inputs if n not in feeds]
    if missing_feeds:
        raise InputDataError(
            f"graph '{graph.name}' needs input(s) {missing_feeds} but got {sorted(feeds)}; "
            "pass one tensor per graph input"
        )
    table = _kernel_table(graph, kernels)
    produced = set(graph.inputs) | set(graph.initializers)
    for node in graph.nodes:
        produced.update(o for o in node.outputs if o)
    unknown = [w for w in wanted if w not in produced]
    if unknown:
        raise ShapeError(
            f"requested tensor(s) {unknown} do not exist in graph '{graph.name}'; "
            "ask for graph inputs, initializers or node outputs"
        )
    env = {name: torch.as_tensor(feeds[name]).to(device) for name in graph.inputs}
    _execute(graph, env, 0, len(graph.nodes), table, set(wanted), hook, torch.device(device), grad)
    result: dict[str, torch.Tensor] = {}
    for w in wanted:
        t = env.get(w)
        if t is None:  # an initializer (graph inputs and node outputs are kept in ``env``)
            t = registry.numpy_to_torch(graph.initializers[w], device)
        result[w] = t
    return result


def run_segment(
    graph: Graph,
    env: Mapping[str, torch.Tensor],
    start: int,
    stop: int | None = None,
    *,
    keep: Iterable[str] = (),
    device: str | torch.device = "cpu",
    hook: Hook | None = None,
    kernels: Mapping[str, KernelFn] | None = None,
    grad: bool = False,
) -> dict[str, torch.Tensor]:
    """Run nodes ``start`` to ``stop - 1`` of ``graph`` from ``env``, the tensors live before node
    ``start`` (graph inputs, earlier outputs a later node reads), as :func:`run_graph` would.

    Returns the tensors live after the segment: those a later node reads, plus the graph outputs and
    ``keep`` names produced so far. ``env`` itself is not modified, so one prefix can be resumed many
    times (e.g. to score alternatives that differ only from node ``start`` on). ``grad``: as in
    :func:`run_graph`.
    """
    stop = len(graph.nodes) if stop is None else stop
    table = _kernel_table(graph, kernels)
    state = dict(env)
    keep_names = set(graph.outputs) | set(keep)
    _execute(graph, state, start, stop, table, keep_names, hook, torch.device(device), grad)
    return state


def _execute(
    graph: Graph,
    env: dict[str, torch.Tensor],
    start: int,
    stop: int,
    table: Mapping[str, KernelFn],
    keep: set[str],
    hook: Hook | None,
    dev: torch.device,
    grad: bool = False,
) -> None:
    """Run nodes ``start`` .. ``stop - 1`` on ``env`` in place, freeing tensors after their last reader
    (under ``torch.no_grad()`` unless ``grad``)."""
    last_use = _last_use(graph)
    init_cache: dict[str, torch.Tensor] = {}  # initializers are converted once per call, on first use

    def fetch(name: str) -> torch.Tensor | None:
        if not name:
            return None
        if name in env:
            return env[name]
        if name in graph.initializers:
            t = init_cache.get(name)
            if t is None:
                t = registry.numpy_to_torch(graph.initializers[name], dev)
                init_cache[name] = t
            return t
        raise ShapeError(
            f"tensor '{name}' is read before it is produced in graph '{graph.name}'; "
            "the node order is not topological (call graph.toposort())"
        )

    token = registry.set_current_graph(graph)
    try:
        with contextlib.nullcontext() if grad else torch.no_grad():
            for i in range(start, stop):
                node = graph.nodes[i]
                kernel = table[node.op_type]
                args = [fetch(n) for n in node.inputs]
                try:
                    results = kernel(node, args)
                except EspqError as exc:
                    msg = str(exc)
                    if node.name in msg:
                        raise
                    raise type(exc)(
                        f"node '{node.name}' ({node.op_type}), inputs [{_shapes(args)}]: {msg}"
                    ) from exc
                except Exception as exc:
                    raise ShapeError(
                        f"float kernel of node '{node.name}' ({node.op_type}) failed on inputs "
                        f"[{_shapes(args)}]: {type(exc).__name__}: {exc}; check the input shapes and the "
                        "node's attributes"
                    ) from exc
                for k, out_name in enumerate(node.outputs):
                    if not out_name:
                        continue
                    if k >= len(results):
                        if out_name in last_use or out_name in keep:
                            raise UnsupportedOpError(
                                f"node '{node.name}' ({node.op_type}): output {k} ('{out_name}') is used "
                                "but the float kernel does not compute it"
                            )
                        continue
                    t = results[k]
                    if t.device.type != dev.type:  # e.g. Constant outputs created on the CPU
                        t = t.to(dev)
                    if hook is not None:
                        t = hook(node, k, t)
                    env[out_name] = t
                for name in set(node.inputs) | set(node.outputs):
                    if name and name not in keep and last_use.get(name, -1) <= i:
                        env.pop(name, None)
                        init_cache.pop(name, None)
    finally:
        registry.reset_current_graph(token)
