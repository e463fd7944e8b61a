"""Bring old-opset operator forms to their newest ONNX form and lift the graph to opset >= 18.

ESP-DL reads index-like parameters (axes, splits, slice bounds, pads, clip bounds) as INT64/typed
initializer *inputs* (esp_dl_facts.md §2.4, §3.2); ESP-PPQ's formatter does the same for Slice,
Clip and Pad (esp_ppq_facts.md §3.2 item 10). This pass converts:

* Squeeze / Unsqueeze ``axes``, Reduce* ``axes``, Split ``split``, opset-1 Slice
  ``starts/ends/axes``, Clip ``min/max``, Pad ``pads``/``paddings``/``value``, TopK ``k``,
  Dropout ``ratio`` attributes to inputs;
* Split without sizes gets ``num_outputs`` (required by opset 18);
* Upsample and opset-10 Resize to opset-11+ Resize (asymmetric coordinates, floor rounding: the
  behaviour of the old ops);
* opset<13 Softmax/LogSoftmax/Hardmax (which flatten to 2-D at ``axis``, default 1) to the opset-13
  per-axis form (an explicit Flatten/Reshape pair when the axis is not the last one);
* opset<9 BatchNormalization's legacy attributes, opset<11 Scatter to ScatterElements;
* negative axes to positive ones where the rank is known.

Afterwards ``graph.opset`` is at least 18. Graphs below opset 7 (legacy broadcasting) are refused.
The conversion is all-or-nothing (a half-converted graph would be invalid at either opset).
"""

from __future__ import annotations

import logging

import numpy as np

from espq.errors import UnsupportedOpError
from espq.ir.graph import Graph, Node
from espq.ir.ops import REDUCE_OPS
from espq.ir.passes._common import add_initializer, const, positive_axes, rank, set_value, skip

logger = logging.getLogger(__name__)

TARGET_OPSET = 18
_SINGLE_AXIS_OPS = frozenset({"Concat", "Gather", "Flatten", "ArgMax", "ArgMin", "LayerNormalization"})


def _int64(graph: Graph, node: Node, what: str, values: list[int]) -> str:
    return add_initializer(graph, f"{node.name}_{what}", np.array(values, dtype=np.int64))


def _set_input(node: Node, index: int, name: str) -> None:
    while len(node.inputs) <= index:
        node.inputs.append("")
    node.inputs[index] = name


def _axes_to_input(graph: Graph, node: Node, r: int | None) -> bool:
    """Squeeze/Unsqueeze/Reduce*: ``axes`` attribute -> input 1, made positive where possible."""
    changed = False
    if "axes" in node.attrs:
        axes = list(node.attrs.pop("axes"))
        if r is not None:
            axes = positive_axes(axes, r)
        _set_input(node, 1, _int64(graph, node, "axes", axes))
        return True
    axes_arr = const(graph, node.inputs[1]) if len(node.inputs) > 1 else None
    if axes_arr is not None and r is not None and (axes_arr < 0).any():
        node.inputs[1] = _int64(graph, node, "axes", positive_axes([int(a) for a in axes_arr], r))
        changed = True
    return changed


def _axes_rank(graph: Graph, node: Node) -> int | None:
    r = rank(graph, node.inputs[0])
    if node.op_type == "Unsqueeze" and r is not None:
        n_axes = len(node.attrs["axes"]) if "axes" in node.attrs else None
        if n_axes is None and len(node.inputs) > 1 and const(graph, node.inputs[1]) is not None:
            n_axes = const(graph, node.inputs[1]).size
        return None if n_axes is None else r + n_axes
    return r


def _split(graph: Graph, node: Node, r: int | None) -> bool:
    changed = _positive_axis(node, r)
    if "split" in node.attrs:
        _set_input(node, 1, _int64(graph, node, "split", list(node.attrs.pop("split"))))
        return True
    if (len(node.inputs) < 2 or not node.inputs[1]) and "num_outputs" not in node.attrs:
        node.attrs["num_outputs"] = len(node.outputs)
        return True
    return changed


def _slice(graph: Graph, node: Node, r: int | None) -> bool:
    if "starts" in node.attrs:
        starts = list(node.attrs.pop("starts"))
        ends = list(node.attrs.pop("ends"))
        axes = list(node.attrs.pop("axes", range(len(starts))))
        if r is not None:
            axes = positive_axes(axes, r)
        node.inputs = [node.inputs[0]] + [
            _int64(graph, node, k, v) for k, v in (("starts", starts), ("ends", ends), ("axes", axes))
        ]
        return True
    axes_arr = const(graph, node.inputs[3]) if len(node.inputs) > 3 else None
    if axes_arr is not None and r is not None and (axes_arr < 0).any():
        node.inputs[3] = _int64(graph, node, "axes", positive_axes([int(a) for a in axes_arr], r))
        return True
    return False


def _clip(graph: Graph, node: Node) -> bool:
    if "min" not in node.attrs and "max" not in node.attrs:
        return False
    dtype = graph.dtype(node.inputs[0]) or np.dtype(np.float32)
    bounds = []
    for key in ("min", "max"):
        if key in node.attrs:
            bounds.append(add_initializer(graph, f"{node.name}_{key}", np.array(node.attrs.pop(key), dtype)))
        else:
            bounds.append("")  # absent optional input = unbounded on that side
    node.inputs = [node.inputs[0]] + bounds
    while node.inputs[-1] == "":
        node.inputs.pop()
    return True


def _pad(graph: Graph, node: Node) -> bool:
    key = "pads" if "pads" in node.attrs else "paddings" if "paddings" in node.attrs else None
    if key is None:
        return False
    pads = list(node.attrs.pop(key))
    value = node.attrs.pop("value", 0.0)
    dtype = graph.dtype(node.inputs[0]) or np.dtype(np.float32)
    node.inputs = [node.inputs[0], _int64(graph, node, "pads", pads)]
    if value != 0.0:
        node.inputs.append(add_initializer(graph, f"{node.name}_value", np.array(value, dtype)))
    return True


def _resize_attrs(node: Node, mode: str) -> None:
    mode = "linear" if mode in ("linear", "bilinear") else "nearest"
    node.attrs.clear()
    node.attrs.update({"mode": mode, "coordinate_transformation_mode": "asymmetric"})
    if mode == "nearest":
        node.attrs["nearest_mode"] = "floor"


def _upsample(graph: Graph, node: Node) -> bool:
    """Upsample (opset 7: ``scales`` attribute; 9: input) -> Resize(X, "", scales)."""
    if "scales" in node.attrs:
        scales = add_initializer(graph, f"{node.name}_scales", np.array(node.attrs["scales"], np.float32))
    else:
        scales = node.inputs[1]
    _resize_attrs(node, node.attrs.get("mode", "nearest"))
    node.op_type = "Resize"
    node.inputs = [node.inputs[0], "", scales]
    return True


def _old_resize(graph: Graph, node: Node) -> bool:
    """opset-10 Resize(X, scales) -> Resize(X, "", scales) with the old coordinate rule."""
    _resize_attrs(node, node.attrs.get("mode", "nearest"))
    node.inputs = [node.inputs[0], "", node.inputs[1]]
    return True


def _softmax_blocker(graph: Graph, node: Node) -> str | None:
    """Why an opset<13 Softmax-like node cannot be converted yet (its rank is needed), or None."""
    axis = node.attrs.get("axis", 1)
    if axis == -1 or rank(graph, node.inputs[0]) is not None:
        return None
    return f"rank of '{node.inputs[0]}' unknown (needed to convert opset<13 {node.op_type} axis={axis})"


def _softmax(graph: Graph, node: Node, r: int | None) -> bool:
    """opset<13 Softmax-like ops work on the input flattened to 2-D at ``axis`` (default 1)."""
    axis = node.attrs.get("axis", 1)
    if axis == -1:  # flattening at the last axis is the per-axis op on that axis
        node.attrs["axis"] = -1 if r is None else r - 1
        return True
    axis = axis + r if axis < 0 else axis
    shape = graph.shape(node.inputs[0])
    if axis == r - 1 or all(d == 1 for d in shape[axis + 1 :]):
        node.attrs["axis"] = axis
        return True
    # Flatten(axis) -> op(axis=1) -> Reshape(original shape)
    flat = graph.unique_name(f"{node.name}_flat")
    out = node.outputs[0]
    soft = graph.unique_name(f"{node.name}_2d")
    pos = graph.nodes.index(node)
    graph.add_node(
        Node(graph.unique_name(f"{node.name}_flatten"), "Flatten", [node.inputs[0]], [flat], {"axis": axis}),
        pos,
    )
    n_rows = int(np.prod(shape[:axis], dtype=np.int64))
    dtype = graph.dtype(node.inputs[0])
    set_value(graph, flat, dtype, (n_rows, int(np.prod(shape[axis:], dtype=np.int64))))
    set_value(graph, soft, dtype, graph.shape(flat))
    node.inputs = [flat]
    node.outputs = [soft]
    node.attrs["axis"] = 1
    shape_name = _int64(graph, node, "shape", list(shape))
    graph.add_node(
        Node(graph.unique_name(f"{node.name}_reshape"), "Reshape", [soft, shape_name], [out]), pos + 2
    )
    return True


def _batchnorm(node: Node) -> bool:
    changed = False
    if node.attrs.get("spatial", 1) != 1:
        raise UnsupportedOpError(
            f"BatchNormalization '{node.name}' uses spatial=0 (per-element statistics, opset < 9), which "
            "has no opset-9+ equivalent; re-export the model with a recent exporter"
        )
    for key in ("spatial", "is_test", "consumed_inputs"):
        if key in node.attrs:
            del node.attrs[key]
            changed = True
    return changed


def _positive_axis(node: Node, r: int | None) -> bool:
    axis = node.attrs.get("axis")
    if axis is None or r is None or axis >= 0:
        return False
    node.attrs["axis"] = axis + r
    return True


def _rewrite(graph: Graph, node: Node, old_opset: int) -> bool:
    """Normalise one node; True when it changed."""
    op = node.op_type
    r = rank(graph, node.inputs[0]) if node.inputs and node.inputs[0] else None
    if op in ("Squeeze", "Unsqueeze") or op in REDUCE_OPS:
        return _axes_to_input(graph, node, _axes_rank(graph, node))
    if op == "Split":
        return _split(graph, node, r)
    if op == "Slice":
        return _slice(graph, node, r)
    if op == "Clip":
        return _clip(graph, node)
    if op == "Pad":
        return _pad(graph, node)
    if op == "Upsample":
        return _upsample(graph, node)
    if op == "Resize" and old_opset < 11 and len(node.inputs) == 2:
        return _old_resize(graph, node)
    if op in ("Softmax", "LogSoftmax", "Hardmax"):
        if old_opset < 13:
            return _softmax(graph, node, r)
        return _positive_axis(node, r)
    if op == "BatchNormalization":
        return _batchnorm(node)
    if op == "Scatter":
        node.op_type = "ScatterElements"
        return True
    if op == "TopK" and "k" in node.attrs:
        _set_input(node, 1, _int64(graph, node, "k", [node.attrs.pop("k")]))
        return True
    if op == "Dropout" and ("ratio" in node.attrs or "is_test" in node.attrs):
        node.attrs.pop("is_test", None)
        if "ratio" in node.attrs:
            ratio = np.array(node.attrs.pop("ratio"), np.float32)
            _set_input(node, 1, add_initializer(graph, f"{node.name}_ratio", ratio))
        return True
    if op in _SINGLE_AXIS_OPS:
        if op == "Concat" and r is None:
            known = [rank(graph, i) for i in node.inputs if i]
            r = next((k for k in known if k is not None), None)
        return _positive_axis(node, r)
    return False


def normalize_attributes(graph: Graph) -> int:
    """Rewrite attribute forms to input forms and set ``graph.opset >= 18``. Returns #nodes changed.

    * matches: the operators listed in the module docstring, in the default domain;
    * all or nothing: when an opset<13 Softmax-like node's input rank is still unknown, nothing is
      changed (reasons logged; a later round, after constant folding and shape inference, retries);
      a form with no modern equivalent raises UnsupportedOpError;
    * produces: the same operator (or Resize / Flatten+op+Reshape) with initializer inputs.
    """
    old_opset = graph.opset
    if old_opset < 7:
        raise UnsupportedOpError(
            f"graph '{graph.name}' uses opset {old_opset} (legacy broadcasting, opset < 7); convert it "
            "first with onnx.version_converter.convert_version(model, 13)"
        )
    if old_opset < 13:
        blockers = [
            (n, _softmax_blocker(graph, n))
            for n in graph.nodes
            if n.op_type in ("Softmax", "LogSoftmax", "Hardmax") and n.domain in ("", "ai.onnx")
        ]
        blockers = [(n, why) for n, why in blockers if why is not None]
        for n, why in blockers:
            skip(logger, n, f"{why}; the whole graph stays at opset {old_opset} for now")
        if blockers:
            return 0
    count = 0
    for node in list(graph.nodes):
        if node.domain not in ("", "ai.onnx"):
            continue
        if _rewrite(graph, node, old_opset):
            logger.debug("normalised %s (%s)", node.name, node.op_type)
            count += 1
    graph.opset = max(graph.opset, TARGET_OPSET)
    graph.invalidate()
    return count
