"""Streaming export (ESP-PPQ's ``auto_streaming`` / ``streaming_input_shape`` / ``streaming_table`` /
``streaming_custom_passes``; esp_ppq_2026.md §1.11, esp_ppq_facts.md §8.2).

Calibration happened on the offline shape; the export works on a streaming copy of the model:

1. :func:`streaming_options` checks the arguments: each entry of ``streaming_input_shape`` differs
   from its input's offline shape in exactly one dimension, the frame axis (ConfigError otherwise);
2. :func:`streaming_model` copies the float IR, runs the user's custom passes (callables
   ``f(graph) -> Graph | None`` or objects with ``.apply(graph)``; espq passes them its IR
   :class:`espq.ir.Graph`), inserts the caches (:func:`espq.ir.passes.streaming.insert_streaming_caches`),
   sets the chunk shape and re-derives every tensor shape by one float run on zeros (ESP-PPQ keeps the
   offline intermediate shapes; espq writes the shapes the chip computes), and extends the plan:
   a cache takes its consumer's input spec (exponent), a Requantize its consumer expected moves in
   front of the cache;
3. the usual lowering runs on that copy; :func:`fix_frame_axes` then writes each cache's
   ``frame_axis`` in the exported layout (NCW -> NWC: 2 -> 1).

The embedded test values of a streaming file are the first chunk of the (offline-shaped) test
input and the outputs of the streaming model from a fresh state (zero caches): what the chip's
``Model::test()`` checks right after loading. :func:`chunks` cuts an offline sequence into the
chunk sequence a host or the chip replays.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from espq.errors import ConfigError, EspqError
from espq.export.lower.state import ExportState
from espq.ir import Graph
from espq.ir.graph import TensorInfo
from espq.ir.passes.streaming import CACHE_ATTR_AXIS, StreamingEdits, TableEntry, insert_streaming_caches
from espq.ir.spec import F32, QuantPlan
from espq.targets import Target


@dataclass(frozen=True)
class StreamingOptions:
    """Checked streaming arguments: chunk shape and frame axis per streamed input, table, passes."""

    input_shapes: dict[str, tuple[int, ...]]
    frame_axes: dict[str, int]
    auto: bool = False
    table: tuple[TableEntry, ...] = ()
    passes: tuple[Any, ...] = ()


@dataclass
class StreamingModel:
    """The streaming copy of a quantized model: what the exporter reads (``graph``, ``plan``, ``target``)."""

    graph: Graph
    plan: QuantPlan
    target: Target
    options: StreamingOptions
    edits: StreamingEdits = field(default_factory=StreamingEdits)


def insert_streaming_cache_on_var(
    var_name: str, window_size: int, op_name: str | None = None, frame_axis: int = 1
) -> dict[str, dict[str, Any]]:
    """A ``streaming_table`` entry (ESP-PPQ's helper): a StreamingCache of ``window_size`` frames on
    tensor ``var_name``, before node ``op_name`` (default: the tensor's first reader).

    The reader is then handled by the user: espq neither checks it nor follows the frame axis past
    it. ``window_size <= 1`` inserts no cache and only marks the reader (ESP-PPQ's way to accept an
    op such as a Slice over frames). A ``var_name`` espq's graph lacks (ESP-PPQ's generated
    ``PPQ_Variable_N``) applies to input 0 of ``op_name``. ``frame_axis`` is accepted for ESP-PPQ
    compatibility; espq derives the axis from the streamed input and writes it in the exported layout.
    """
    return {var_name: {"window_size": int(window_size), "op_name": op_name, "frame_axis": int(frame_axis)}}


def _table_entries(streaming_table: Any) -> tuple[TableEntry, ...]:
    if not streaming_table:
        return ()
    items = [streaming_table] if isinstance(streaming_table, Mapping) else list(streaming_table)
    out = []
    for item in items:
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"streaming_table entries must be dicts from insert_streaming_cache_on_var, got {item!r}"
            )
        for var, spec in item.items():
            if not isinstance(spec, Mapping) or "window_size" not in spec:
                raise ConfigError(
                    f"streaming_table entry '{var}': expected {{'window_size', 'op_name', 'frame_axis'}}"
                )
            out.append(
                TableEntry(
                    str(var), int(spec["window_size"]), spec.get("op_name"), int(spec.get("frame_axis", 1))
                )
            )
    return tuple(out)


def _shapes_by_input(graph: Graph, streaming_input_shape: Any) -> dict[str, tuple[int, ...]]:
    if isinstance(streaming_input_shape, Mapping):
        unknown = [k for k in streaming_input_shape if k not in graph.inputs]
        if unknown:
            raise ConfigError(
                f"streaming_input_shape names {unknown}, which are not graph inputs {graph.inputs}"
            )
        items = dict(streaming_input_shape)
    else:
        shape = list(streaming_input_shape)
        if shape and all(isinstance(s, (list, tuple)) for s in shape):
            if len(shape) != len(graph.inputs):
                raise ConfigError(
                    f"streaming_input_shape has {len(shape)} shapes for the {len(graph.inputs)} inputs "
                    f"{graph.inputs}"
                )
            items = dict(zip(graph.inputs, shape))
        elif len(graph.inputs) == 1:
            items = {graph.inputs[0]: shape}
        else:
            raise ConfigError(
                f"the model has inputs {graph.inputs}: give streaming_input_shape as a dict by input name"
            )
    return {k: tuple(int(d) for d in v) for k, v in items.items()}


def streaming_options(
    graph: Graph,
    streaming_input_shape: Any = None,
    auto_streaming: bool = False,
    streaming_table: Any = None,
    streaming_custom_passes: Sequence[Any] | None = None,
) -> StreamingOptions | None:
    """The checked options, or None when no streaming argument is given (a plain export)."""
    if (
        streaming_input_shape is None
        and not auto_streaming
        and not streaming_table
        and not streaming_custom_passes
    ):
        return None
    if streaming_input_shape is None:
        raise ConfigError(
            "streaming export needs streaming_input_shape (the chunk shape, e.g. [1, C, frames_per_chunk])"
        )
    shapes = _shapes_by_input(graph, streaming_input_shape)
    axes = {}
    for name, shape in shapes.items():
        offline = graph.shape(name)
        if offline is None:
            raise ConfigError(f"graph input '{name}' has no static shape; streaming needs one")
        diff = [i for i, (a, b) in enumerate(zip(offline, shape)) if a != b]
        if len(shape) != len(offline) or len(diff) != 1:
            raise ConfigError(
                f"streaming_input_shape {list(shape)} for input '{name}' (offline {list(offline)}) must "
                "have the same rank and differ in exactly one dimension, the frame axis "
                f"(it differs in {len(diff) if len(shape) == len(offline) else 'rank'})"
            )
        if shape[diff[0]] < 1:
            raise ConfigError(
                f"streaming_input_shape for '{name}': frame count {shape[diff[0]]} must be >= 1"
            )
        axes[name] = diff[0]
    passes = tuple(streaming_custom_passes or ())
    for p in passes:
        if not callable(p) and not callable(getattr(p, "apply", None)):
            raise ConfigError(f"streaming_custom_passes: {p!r} is neither callable nor has .apply(graph)")
    return StreamingOptions(shapes, axes, bool(auto_streaming), _table_entries(streaming_table), passes)


def _run_passes(graph: Graph, passes: Sequence[Any]) -> Graph:
    for p in passes:
        fn: Callable = p if callable(p) else p.apply
        out = fn(graph)
        if out is not None:
            if not isinstance(out, Graph):
                raise ConfigError(
                    f"streaming custom pass {p!r} returned {type(out).__name__}, not an espq Graph"
                )
            graph = out
    return graph


def _chunk_shapes(graph: Graph, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Set the chunk input shapes and re-derive every activation shape by one float run on zeros."""
    from espq.sim.float import run_float

    for name, shape in shapes.items():
        graph.values[name] = TensorInfo(graph.values[name].dtype, tuple(shape))
    feeds = {}
    for name in graph.inputs:
        info = graph.values[name]
        feeds[name] = np.zeros([int(d) for d in info.shape], dtype=info.dtype)
    names = [o for n in graph.nodes for o in n.outputs if o]
    try:
        values = run_float(graph, feeds, outputs=names)
    except EspqError as exc:
        raise ConfigError(
            f"the streaming graph does not run at the chunk shape {dict(shapes)}: {exc}"
        ) from exc
    except (RuntimeError, ValueError, IndexError) as exc:
        raise ConfigError(
            f"the streaming graph does not run at the chunk shape {dict(shapes)} ({exc}); a Reshape/Slice "
            "with a fixed frame count needs a custom pass or another chunk size"
        ) from exc
    for name, value in values.items():
        info = graph.values.get(name)
        dtype = info.dtype if info is not None else value.dtype
        graph.values[name] = TensorInfo(np.dtype(dtype), tuple(int(d) for d in value.shape))


def _extend_plan(plan: QuantPlan, graph: Graph, edits: StreamingEdits) -> QuantPlan:
    plan = copy.deepcopy(plan)
    for name in edits.removed:
        plan.node_types.pop(name, None)
    for consumer, idx, old, new in edits.rewires:
        key = f"{consumer}:{idx}"
        want = plan.input_spec(consumer, idx, old)
        if want is not None and plan.tensors.get(new) != want:
            plan.requant[key] = want
    for cache, (consumer, idx, x) in edits.caches.items():
        key = f"{consumer}:{idx}"
        want = plan.requant.pop(key, None)
        out = graph.node(cache).outputs[0]
        spec = want if want is not None else plan.tensors.get(x)
        if spec is not None:
            plan.tensors[out] = spec
        if want is not None:
            plan.requant[f"{cache}:0"] = want
        plan.node_types[cache] = plan.node_types.get(consumer, F32)
    return plan


def _check_strides(graph: Graph, edits: StreamingEdits) -> None:
    for name, x, stride in edits.strided:
        node = graph.node(name)
        axis = edits.frame_axes.get(x)
        shape = graph.shape(x)
        if axis is None or shape is None:
            continue
        frames = shape[axis]
        if frames % stride:
            raise ConfigError(
                f"node '{name}' ({node.op_type}) strides the frame axis by {stride} but gets {frames} new "
                f"frame(s) per chunk; choose a chunk size whose frames reach it in multiples of {stride}"
            )


def streaming_model(qm, options: StreamingOptions) -> StreamingModel:
    """The streaming copy of quantized model ``qm`` (module docstring, steps 2)."""
    graph = qm.graph.copy()
    offline = {name: graph.values[name] for name in options.input_shapes}
    for name, shape in options.input_shapes.items():  # passes see the chunk input shape (ESP-PPQ)
        graph.values[name] = TensorInfo(offline[name].dtype, tuple(shape))
    graph = _run_passes(graph, options.passes)
    graph.values.update(offline)  # the frame axis is followed over the offline shapes
    edits = insert_streaming_caches(graph, dict(options.frame_axes), options.auto, list(options.table))
    _chunk_shapes(graph, options.input_shapes)
    # the cached tensors' frame counts per chunk (shape of the tensor a cache reads)
    _check_strides(graph, edits)
    plan = _extend_plan(qm.plan, graph, edits)
    return StreamingModel(graph, plan, qm.target, options, edits)


def fix_frame_axes(state: ExportState) -> None:
    """Rewrite every StreamingCache's ``frame_axis`` from the original to the exported layout."""
    for node in state.graph.nodes:
        if node.op_type != "StreamingCache":
            continue
        axis = int(node.attr(CACHE_ATTR_AXIS, 1))
        perm = state.perm(node.inputs[0])
        if axis < len(perm):
            node.attrs[CACHE_ATTR_AXIS] = perm.index(axis)


def chunks(x: np.ndarray, axis: int, size: int) -> list[np.ndarray]:
    """``x`` cut into consecutive chunks of ``size`` frames along ``axis`` (the last may be shorter)."""
    n = x.shape[axis]
    return [np.take(x, np.arange(i, min(i + size, n)), axis=axis) for i in range(0, n, size)]


def first_chunk_inputs(options: StreamingOptions, feeds: Mapping[str, np.ndarray]) -> dict:
    """The first chunk of each streamed input of offline-shaped ``feeds`` (others unchanged)."""
    out = {}
    for name, value in feeds.items():
        arr = np.asarray(value)
        if name in options.frame_axes:
            axis = options.frame_axes[name]
            size = options.input_shapes[name][axis]
            if arr.shape[axis] != size:
                arr = chunks(arr, axis, size)[0]
        out[name] = arr
    return out


__all__ = [
    "StreamingModel",
    "StreamingOptions",
    "chunks",
    "first_chunk_inputs",
    "fix_frame_axes",
    "insert_streaming_cache_on_var",
    "streaming_model",
    "streaming_options",
]
