"""Streaming rewrite of a float IR graph: StreamingCache nodes along the frame axis.

Semantics follow ESP-PPQ's ``espdl_streaming.py`` (esp_ppq_2026.md §1.11, esp_ppq_facts.md §8.2),
applied here to the original-layout IR before the export lowering:

* the frame axis starts at the dimension of a graph input that the chunk shape changes and is
  followed through the graph (:func:`insert_streaming_caches`);
* with ``auto`` every Conv / AveragePool / MaxPool reading a frame-carrying input 0 gets a
  ``StreamingCache`` with ``window = dilation·(k−1)+1`` (none when 1); its past-side padding on the
  frame axis is removed (also a constant-zero ``Pad`` in front of it, which the cache's zero start
  replaces), future-side padding and ``SAME`` padding are errors naming the node;
* bypass ops keep the frame axis (Transpose/Reshape move it); reductions, softmax, flatten, slices
  and concatenations *across* the frame axis are errors that name the node and point to
  ``insert_streaming_cache_on_var``;
* a table entry ``{var: {"window_size", "op_name", "frame_axis"}}`` puts a cache on ``var`` before
  ``op_name`` (default: its first reader) and marks that reader as handled by the user: its
  outputs no longer carry the frame axis and nothing downstream is checked. ``window_size <= 1``
  only marks the reader (ESP-PPQ's way to accept an op, e.g. the tutorial's Slice).

A cache node's ``frame_axis`` attribute is the ORIGINAL-layout axis here; the exporter rewrites it
to the exported layout after the channel-last pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from espq.errors import ConfigError, UnsupportedOpError
from espq.ir.graph import Graph, Node, TensorInfo

logger = logging.getLogger(__name__)

WINDOWED = frozenset({"Conv", "AveragePool", "MaxPool", "ConvTranspose"})
#: ops that keep every axis of their (first) activation input
ELEMENTWISE = frozenset(
    {
        "Relu", "PRelu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "Elu", "Erf", "Gelu", "Clip",
        "Cast", "LeakyRelu", "Softplus", "Identity", "Swish", "Abs", "Exp", "Log", "Sqrt", "Cos",
        "Sin", "Tan", "Not", "Floor", "Round", "Ceil", "Neg", "Reciprocal", "Selu", "Softsign",
        "Sign", "QuantizeLinear", "DequantizeLinear", "RequantizeLinear", "StreamingCache",
        "BatchNormalization", "Dropout", "Add", "Sub", "Mul", "Div", "Pow", "Mod", "And", "Or",
        "Xor", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Sum",
        "Mean", "Where",
    }
)  # fmt: skip
RESHAPES = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
RECURRENT = frozenset({"GRU", "LSTM", "RNN"})
REDUCTIONS = frozenset(
    {
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin",
    }
)  # fmt: skip
AXIS_OPS = frozenset(
    {"Softmax", "LogSoftmax", "LpNormalization", "Concat", "Split", "Slice", "Gather", "TopK",
     "CumSum", "LayerNormalization", "RMSNormalization", "InstanceNormalization"}
)  # fmt: skip
AXIS_DEFAULTS = {"Softmax": -1, "LogSoftmax": -1, "LpNormalization": -1, "LayerNormalization": -1,
                 "RMSNormalization": -1, "TopK": -1}  # fmt: skip
CACHE_ATTR_AXIS = "frame_axis"


@dataclass(frozen=True)
class TableEntry:
    """One manual cache request (ESP-PPQ ``insert_streaming_cache_on_var``)."""

    var: str
    window_size: int
    op_name: str | None = None
    frame_axis: int = 1


@dataclass
class StreamingEdits:
    """What :func:`insert_streaming_caches` did, for the plan and the exporter.

    * ``caches``: cache node name -> (consumer node name, consumer input index, cached tensor);
    * ``rewires``: (consumer, input index, old tensor, new tensor) for bypassed Pad nodes;
    * ``removed``: names of nodes that were removed (fully absorbed Pad nodes);
    * ``strided``: (node name, cached/input tensor, frame stride) of windowed ops with stride > 1;
    * ``frame_axes``: tensor -> original-layout frame axis (tensors still carrying frames).
    """

    caches: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    rewires: list[tuple[str, int, str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    strided: list[tuple[str, str, int]] = field(default_factory=list)
    frame_axes: dict[str, int] = field(default_factory=dict)


def _hint(var: str) -> str:
    return (
        f"add a cache by hand: streaming_table=[insert_streaming_cache_on_var('{var}', window_size, "
        "op_name=None, frame_axis=1)] (espq.api), or change the model"
    )


def _across(node: Node, what: str, var: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"node '{node.name}' ({node.op_type}) {what} across the streaming frame axis, so it cannot run "
        f"chunk by chunk; {_hint(var)}"
    )


def _ints(value, n: int, default: int) -> list[int]:
    if value is None:
        return [default] * n
    return [int(v) for v in np.asarray(value).reshape(-1)]


class _Tracker:
    def __init__(self, graph: Graph, auto: bool, table: list[TableEntry]):
        self.g = graph
        self.auto = auto
        self.axes: dict[str, int] = {}
        self.edits = StreamingEdits()
        self.manual: dict[tuple[str, str], TableEntry] = {}  # (consumer, var) -> entry
        self.handled: set[str] = set()  # nodes whose frame handling the user took over
        self.removed_past: dict[str, int] = {}  # reader -> past frames of a Pad removed before it
        self.unnamed: set[tuple[str, str]] = set()  # table entries without op_name: '<var>_SCache'
        self._resolve_table(table)

    # ------------------------------------------------------------------ table
    def _resolve_table(self, table: list[TableEntry]) -> None:
        known = self.g.tensor_names()
        for e in table:
            op = e.op_name
            if e.window_size <= 1 and (op is None or not self.g.has_node(op)) and e.var not in known:
                # a marker (no cache) naming nothing of espq's graph, e.g. ESP-PPQ's PPQ_Variable_0 on
                # its "/Slice": it could only accept an op; an op it fails to accept is an error below
                logger.warning("streaming_table: marker entry '%s' (op %s) names nothing; ignored", e.var, op)
                continue
            if op is not None and not self.g.has_node(op):
                raise ConfigError(f"streaming_table entry for '{e.var}': no node named '{op}' in the graph")
            var = e.var
            if var not in known or (op is not None and var not in self.g.node(op).inputs):
                if op is None:
                    raise ConfigError(
                        f"streaming_table: no tensor named '{e.var}' in the graph; name a tensor of the "
                        "quantized model (qm.graph) or give op_name"
                    )
                node = self.g.node(op)
                acts = [t for t in node.inputs if t and t not in self.g.initializers]
                if not acts:
                    raise ConfigError(f"streaming_table: node '{op}' reads no activation for '{e.var}'")
                logger.warning(
                    "streaming_table: tensor '%s' is not in espq's graph; using input '%s' of node '%s'",
                    e.var, acts[0], op,
                )  # fmt: skip
                var = acts[0]
            readers = self.g.consumers(var)
            if op is None:
                self.unnamed.add((readers[0].name if readers else "", var))
                if not readers:
                    raise ConfigError(f"streaming_table: tensor '{var}' has no reader to put a cache before")
                op = readers[0].name
            old = self.manual.get((op, var))
            if old is None or old.window_size < int(e.window_size):  # a window-1 entry only marks
                self.manual[(op, var)] = TableEntry(var, int(e.window_size), op, int(e.frame_axis))
            self.handled.add(op)

    # ------------------------------------------------------------------ helpers
    def error(self, exc: Exception) -> None:
        if self.auto:
            raise exc

    def shape(self, t: str) -> tuple[int, ...] | None:
        return self.g.shape(t)

    def insert_cache(self, node: Node, idx: int, window: int, axis: int) -> str:
        x = node.inputs[idx]
        base = (
            f"{x}_SCache" if (node.name, x) in self.unnamed else f"{x}_{node.name}_SCache"
        )  # ESP-PPQ's names
        name = self.g.unique_name(base)
        out = self.g.unique_name(f"{base}_output")
        info = self.g.values.get(x)
        self.g.values[out] = info.copy() if info else TensorInfo(np.dtype(np.float32), None)
        cache = Node(name, "StreamingCache", [x], [out], {"window_size": int(window), CACHE_ATTR_AXIS: axis})
        self.g.add_node(cache, self.g.nodes.index(node))
        node.inputs[idx] = out
        self.g.invalidate()
        self.axes[out] = axis
        self.edits.caches[name] = (node.name, idx, x)
        return out

    def manual_caches(self, node: Node) -> None:
        """Insert the table's caches in front of ``node`` (window <= 1: no cache)."""
        for idx, t in enumerate(list(node.inputs)):
            e = self.manual.get((node.name, t))
            if e is None or e.window_size <= 1:
                continue
            axis = self.axes.get(t)
            if axis is None:
                raise ConfigError(
                    f"streaming_table: tensor '{t}' (read by node '{node.name}') does not carry the streamed "
                    "frame axis (it does not depend on a streamed input along frames)"
                )
            self.insert_cache(node, idx, e.window_size, axis)

    # ------------------------------------------------------------------ rules
    def visit(self, node: Node) -> None:
        tracked = [(i, t) for i, t in enumerate(node.inputs) if t in self.axes]
        windowed_manual = node.op_type in WINDOWED and any((node.name, t) in self.manual for _, t in tracked)
        if node.name in self.handled and not (windowed_manual and tracked):
            self.manual_caches(node)
            return  # the user took over: outputs no longer tracked
        if not tracked:
            return
        out_axis = self.rule(node, tracked)
        if out_axis is not None:
            for o in node.outputs[:1] if node.op_type not in ("Split", "TopK") else node.outputs:
                if o:
                    self.axes[o] = out_axis

    def rule(self, node: Node, tracked: list[tuple[int, str]]) -> int | None:
        op = node.op_type
        x = tracked[0][1]
        a = self.axes[x]
        if op in WINDOWED:
            return self.windowed(node, tracked)
        if op == "Pad":
            return self.pad(node, x, a)
        if op == "InsertZeros":
            strides = _ints(node.attr("strides", node.attr("stride")), max(a - 1, 1), 1)
            if a >= 2 and a - 2 < len(strides) and strides[a - 2] > 1:
                self.error(
                    UnsupportedOpError(
                        f"node '{node.name}' (InsertZeros of a ConvTranspose) upsamples the frame axis by "
                        f"{strides[a - 2]}; espq cannot stream it chunk-exactly (use frame stride 1)"
                    )
                )
                return None
            return a
        if op in ELEMENTWISE:
            return self.elementwise(node, tracked, a)
        if op == "Transpose":
            r = len(self.shape(x) or ()) or a + 1
            perm = [int(p) for p in (node.attr("perm") or list(reversed(range(r))))]
            return perm.index(a)
        if op in RESHAPES:
            return self.reshape(node, x, a)
        if op in REDUCTIONS:
            return self.reduction(node, x, a)
        if op in ("GlobalAveragePool", "GlobalMaxPool"):
            if a >= 2:
                self.error(_across(node, "pools", x))
                return None
            return a
        if op in AXIS_OPS:
            return self.axis_op(node, tracked, x, a)
        if op in ("MatMul", "Gemm"):
            return self.matmul(node, tracked, x, a)
        if op == "Resize":
            return self.resize(node, x, a)
        if op in RECURRENT:
            # ESP-DL fact (dl_module_gru.hpp / dl_module_lstm.hpp): every forward starts h (and c) from
            # initial_h/initial_c or zeros, and Model::reset() has no state of theirs to keep, so a chunk
            # cannot continue the previous chunk's hidden state; no StreamingCache can carry it
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' ({op}) reads the streaming frame axis: ESP-DL's {op} restarts its "
                    "hidden state from initial_h/zeros on every call, so it cannot run chunk by chunk; "
                    "export it offline (no streaming_input_shape) or stream only the part before it"
                )
            )
            return None
        self.error(_across(node, "is an op espq does not know how to stream", x))
        return None

    def windowed(self, node: Node, tracked: list[tuple[int, str]]) -> int | None:
        idx, x = tracked[0]
        a = self.axes[x]
        if idx != 0 or len(tracked) > 1:
            self.error(_across(node, "reads a streamed tensor as a parameter", x))
            return None
        j = a - 2
        shape = self.shape(x)
        if j < 0:
            self.error(_across(node, "mixes channels/batch", x))
            return None
        n_sp = len(shape) - 2 if shape is not None else j + 1
        if node.op_type == "ConvTranspose":
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' (ConvTranspose) on the streaming frame axis: espq streams Conv/pool "
                    "only (ESP-DL's source does not show how its ConvTranspose behaves behind a "
                    "StreamingCache; lower it to Conv before export)"
                )
            )
            return None
        auto_pad = str(node.attr("auto_pad", "NOTSET"))
        if auto_pad.startswith("SAME"):
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' ({node.op_type}) uses auto_pad={auto_pad}, which pads the future "
                    "side of the frame axis; a streaming model pads only the past (use explicit causal pads)"
                )
            )
            return None
        if node.op_type == "Conv":
            w = self.g.shape(node.inputs[1]) if len(node.inputs) > 1 else None
            k_all = node.attr("kernel_shape") or (list(w[2:]) if w is not None else None)
        else:
            k_all = node.attr("kernel_shape")
        k = int(k_all[j])
        d = _ints(node.attr("dilations"), n_sp, 1)[j]
        s = _ints(node.attr("strides"), n_sp, 1)[j]
        pads = _ints(node.attr("pads"), 2 * n_sp, 0)
        if pads[n_sp + j] > 0:
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' ({node.op_type}) pads {pads[n_sp + j]} frame(s) on the future side "
                    "of "
                    "the frame axis; a streaming model cannot see future frames (pad the past only)"
                )
            )
            return None
        if node.op_type == "AveragePool" and pads[j] > 0 and not int(node.attr("count_include_pad", 0)):
            logger.warning(
                "node '%s': AveragePool with count_include_pad=0: the first frames of a stream differ from "
                "the offline model (the cache's zeros are counted)", node.name,
            )  # fmt: skip
        entry = self.manual.get((node.name, x))
        window = entry.window_size if entry is not None else d * (k - 1) + 1
        past = pads[j] + self.removed_past.pop(node.name, 0)
        if s > 1 and (window - 1 - past) % s:
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' ({node.op_type}) strides the frame axis by {s} after {past} frame(s)"
                    f" of past padding: chunk by chunk it would sample other frames than the offline model; "
                    f"pad {window - 1} (or {window - 1} - a multiple of {s}) past frames"
                )
            )
            return None
        if self.auto:
            pads[j] = 0
            node.attrs["pads"] = pads
        if window > 1 and (self.auto or entry is not None):
            self.insert_cache(node, 0, window, a)
        if s > 1:
            self.edits.strided.append((node.name, x, s))
        return a

    def pad(self, node: Node, x: str, a: int) -> int | None:
        shape = self.shape(x)
        r = len(shape) if shape is not None else None
        pads_t = node.inputs[1] if len(node.inputs) > 1 else ""
        pads = self.g.initializers.get(pads_t)
        if pads is None or r is None or (len(node.inputs) > 3 and node.inputs[3]):
            self.error(_across(node, "pads with non-constant/axes-limited pads", x))
            return None
        flat = [int(v) for v in np.asarray(pads).reshape(-1)]
        past, future = flat[a], flat[r + a]
        if past == 0 and future == 0:
            return a
        if future > 0:
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' (Pad) pads {future} frame(s) on the future side of the frame axis; "
                    "a "
                    "streaming model cannot see future frames (pad the past only)"
                )
            )
            return None
        value = self.g.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        mode = str(node.attr("mode", "constant"))
        readers = self.g.consumers(node.outputs[0])
        ok_readers = readers and all(
            c.op_type in WINDOWED and c.inputs[0] == node.outputs[0] and node.outputs[0] not in c.inputs[1:]
            for c in readers
        )
        if mode != "constant" or (value is not None and np.any(np.asarray(value) != 0)) or not ok_readers:
            self.error(
                UnsupportedOpError(
                    f"node '{node.name}' (Pad, mode {mode}) pads the past of the frame axis before "
                    f"{[c.name for c in readers]}; only zero padding in front of Conv/pools can be replaced "
                    "by a StreamingCache"
                )
            )
            return None
        if not self.auto:
            return a
        flat[a] = 0
        if any(flat):
            self.g.initializers[pads_t] = np.asarray(flat, dtype=np.int64)
            return a
        out = node.outputs[0]
        for c in readers:
            self.removed_past[c.name] = past
            for i, t in enumerate(c.inputs):
                if t == out:
                    c.inputs[i] = x
                    self.edits.rewires.append((c.name, i, out, x))
        self.g.remove_node(node)
        self.g.values.pop(out, None)
        self.edits.removed.append(node.name)
        return None  # the output tensor is gone; readers read x (already tracked)

    def elementwise(self, node: Node, tracked: list[tuple[int, str]], a: int) -> int | None:
        out_shape = self.shape(node.outputs[0])
        x_shape = self.shape(tracked[0][1])
        if out_shape is None or x_shape is None:
            return a
        b = a + len(out_shape) - len(x_shape)
        for _, t in tracked[1:]:
            sh = self.shape(t)
            if sh is not None and self.axes[t] + len(out_shape) - len(sh) != b:
                self.error(_across(node, "combines tensors whose frame axes differ", t))
                return None
        for t in node.inputs:
            if not t or t in self.axes:
                continue
            sh = self.shape(t)
            if sh is None:
                continue
            k = b - (len(out_shape) - len(sh))
            if 0 <= k < len(sh) and sh[k] > 1:
                self.error(_across(node, f"combines the stream with '{t}', which has {sh[k]} frames,", t))
                return None
        return b

    def reshape(self, node: Node, x: str, a: int) -> int | None:
        s, o = self.shape(x), self.shape(node.outputs[0])
        if s is None or o is None:
            self.error(_across(node, "reshapes (shape unknown)", x))
            return None
        before = int(np.prod(s[:a], dtype=np.int64))
        for b in range(len(o)):
            if int(np.prod(o[:b], dtype=np.int64)) == before and o[b] == s[a]:
                break
        else:
            what = "flattens" if node.op_type == "Flatten" else "reshapes"
            self.error(_across(node, what, x))
            return None
        if node.op_type == "Reshape":
            target = self.g.initializers.get(node.inputs[1])
            if target is None:
                self.error(_across(node, "reshapes to a computed shape", x))
                return None
            t = [int(v) for v in np.asarray(target).reshape(-1)]
            if t[b] > 0:
                if -1 in t:
                    self.error(_across(node, "reshapes with a fixed frame count and a -1", x))
                    return None
                t[b] = -1
                name = self.g.unique_name(f"{node.inputs[1]}_streaming")
                self.g.initializers[name] = np.asarray(t, dtype=np.int64)
                node.inputs[1] = name
                self.g.invalidate()
        return b

    def reduction(self, node: Node, x: str, a: int) -> int | None:
        r = len(self.shape(x) or ()) or a + 1
        if node.op_type in ("ArgMax", "ArgMin"):
            axes = [int(node.attr("axis", 0)) % r]
        elif "axes" in node.attrs:
            axes = [int(v) % r for v in node.attrs["axes"]]
        else:
            c = self.g.initializers.get(node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
            flat = [] if c is None else [int(v) % r for v in np.asarray(c).reshape(-1)]
            axes = flat or list(range(r))
        if a in axes:
            self.error(_across(node, "reduces", x))
            return None
        return a if int(node.attr("keepdims", 1)) else a - sum(1 for v in axes if v < a)

    def axis_op(self, node: Node, tracked: list[tuple[int, str]], x: str, a: int) -> int | None:
        op = node.op_type
        r = len(self.shape(x) or ()) or a + 1
        if op in ("Slice",):
            c = self.g.initializers.get(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
            starts = self.g.initializers.get(node.inputs[1])
            axes = (
                [int(v) % r for v in np.asarray(c).reshape(-1)]
                if c is not None
                else list(range(np.asarray(starts).size if starts is not None else r))
            )
        elif op == "InstanceNormalization":
            axes = list(range(2, r))
        elif op in ("LayerNormalization", "RMSNormalization"):
            axes = list(range(int(node.attr("axis", -1)) % r, r))
        else:
            axes = [int(node.attr("axis", AXIS_DEFAULTS.get(op, 0))) % r]
        if op == "Concat" and any(t and t not in self.axes for t in node.inputs):
            self.error(_across(node, "concatenates the stream with a tensor that has no frames", x))
            return None
        if a in axes:
            verb = {"Concat": "concatenates", "Split": "splits", "Slice": "slices", "Gather": "gathers"}
            self.error(_across(node, verb.get(op, "normalises"), x))
            return None
        if op == "Gather":
            idx_shape = self.shape(node.inputs[1])
            if idx_shape is not None and len(idx_shape) == 0 and axes[0] < a:
                return a - 1
        return a

    def matmul(self, node: Node, tracked: list[tuple[int, str]], x: str, a: int) -> int | None:
        idx = tracked[0][0]
        r = len(self.shape(x) or ()) or a + 1
        trans_a = int(node.attr("transA", 0)) if node.op_type == "Gemm" else 0
        contracted = (0 if trans_a else r - 1) if node.op_type == "Gemm" else r - 1
        if idx != 0 or len(tracked) > 1 or a == contracted:
            self.error(_across(node, "contracts", x))
            return None
        return a

    def resize(self, node: Node, x: str, a: int) -> int | None:
        scales = self.g.initializers.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        sizes = self.g.initializers.get(node.inputs[3]) if len(node.inputs) > 3 and node.inputs[3] else None
        s = self.shape(x)
        sc = None if scales is None else np.asarray(scales, dtype=np.float64).reshape(-1)
        if sc is not None and sc.size > a and float(sc[a]) == 1.0:
            return a
        if sizes is not None and s is not None and int(np.asarray(sizes).reshape(-1)[a]) == s[a]:
            return a
        self.error(_across(node, "resizes", x))
        return None


def insert_streaming_caches(
    graph: Graph, frame_axes: dict[str, int], auto: bool, table: list[TableEntry]
) -> StreamingEdits:
    """Rewrite ``graph`` in place for streaming (see the module docstring).

    ``frame_axes``: streamed graph input -> its frame axis (original layout). Shapes in ``graph``
    must still be the offline ones (the frame axis is recognised from them); the caller re-derives
    all shapes at the chunk size afterwards. Raises UnsupportedOpError naming the node (``auto``)
    and ConfigError for a table entry that names nothing in the graph.
    """
    tr = _Tracker(graph, auto, table)
    tr.axes.update(frame_axes)
    for node in list(graph.nodes):
        if node in graph.nodes:
            tr.visit(node)
    tr.edits.frame_axes = dict(tr.axes)
    return tr.edits


__all__ = ["StreamingEdits", "TableEntry", "insert_streaming_caches"]
