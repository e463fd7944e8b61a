"""Evaluate nodes whose inputs are all constant and store their outputs as initializers.

ESP-PPQ gets this from onnxsim before loading the model (esp_ppq_facts.md §3.1). Each foldable
node is run on its own with onnxruntime (a one-node model at the graph's opset).
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from espq.ir.graph import Graph, Node
from espq.ir.limits import check_shape
from espq.ir.onnx_io import _make_attr
from espq.ir.passes._common import skip

logger = logging.getLogger(__name__)

# ops whose output is random, or whose constant inputs carry meaning that folding would erase
# (QDQ pairs keep a pre-quantized model's scales visible)
NEVER_FOLD = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "Dropout",
        "QuantizeLinear",
        "DequantizeLinear",
    }
)


def _session_options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts


def evaluate_node(node: Node, inputs: dict[str, np.ndarray], opset: int) -> list[np.ndarray]:
    """Run one ONNX node with onnxruntime on constant ``inputs`` (name -> array); returns its outputs."""
    proto = helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name)
    proto.attribute.extend(_make_attr(k, v) for k, v in sorted(node.attrs.items()))
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
        if arr.dtype != object
        else helper.make_tensor_value_info(name, onnx.TensorProto.STRING, list(arr.shape))
        for name, arr in inputs.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    g = helper.make_graph([proto], f"fold_{node.name}", graph_inputs, outputs)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    sess = ort.InferenceSession(
        model.SerializeToString(), _session_options(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, dict(inputs))


#: constant inputs up to this many elements are given to shape inference as values (shape-like inputs)
VALUE_INPUT_ELEMENTS = 64


def check_output_sizes(node: Node, inputs: dict[str, np.ndarray], opset: int) -> None:
    """ShapeError (:mod:`espq.ir.limits`) when ONNX shape inference on the node with its small constant
    inputs as values declares an output beyond the size limit (ConstantOfShape, Expand, Tile, Range,
    Resize, Pad...): checked before onnxruntime allocates it. Nodes inference cannot handle pass."""
    proto = helper.make_node(node.op_type, node.inputs, node.outputs, name=node.name)
    proto.attribute.extend(_make_attr(k, v) for k, v in sorted(node.attrs.items()))
    small = {k: v for k, v in inputs.items() if v.dtype != object and v.size <= VALUE_INPUT_ELEMENTS}
    graph_inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
        for name, arr in inputs.items()
        if name not in small and arr.dtype != object
    ]
    outputs = [helper.make_empty_tensor_value_info(o) for o in node.outputs if o]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in small.items()]
    g = helper.make_graph([proto], f"size_{node.name}", graph_inputs, outputs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # noqa: BLE001 - onnx raises many types; onnxruntime reports the real problem
        return
    for vi in inferred.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            check_shape(
                f"node '{node.name}' ({node.op_type}) output '{vi.name}'", [d.dim_value for d in dims]
            )


def _foldable(graph: Graph, node: Node) -> str | None:
    if node.op_type in NEVER_FOLD or node.op_type == "Constant":
        return "never folded"
    if node.domain not in ("", "ai.onnx"):
        return f"custom domain '{node.domain}'"
    if not any(node.inputs):
        return "no inputs"
    if any(isinstance(v, onnx.AttributeProto) for v in node.attrs.values()):
        return "has a subgraph/unsupported attribute"
    if any(o in graph.outputs for o in node.outputs):
        return "an output is a graph output"
    return None


def fold_constants(graph: Graph) -> int:
    """Replace every node whose inputs are all initializers by initializers of its outputs.

    * matches: default-domain nodes with at least one input, all non-empty inputs constant;
    * skips: random ops, QuantizeLinear/DequantizeLinear, Dropout, nodes with subgraphs, nodes
      writing a graph output, and nodes onnxruntime cannot evaluate (reason logged);
    * produces: ``graph.initializers[<output>]`` for each output, node removed. Returns #nodes folded.
    """
    count = 0
    for node in list(graph.nodes):
        names = [i for i in node.inputs if i]
        if not names or any(i not in graph.initializers for i in names):
            continue
        reason = _foldable(graph, node)
        if reason is not None:
            skip(logger, node, reason)
            continue
        feeds = {i: np.asarray(graph.initializers[i]) for i in dict.fromkeys(names)}
        check_output_sizes(node, feeds, graph.opset)
        try:
            results = evaluate_node(node, feeds, graph.opset)
        except Exception as exc:  # onnxruntime raises many exception types
            skip(logger, node, f"onnxruntime could not evaluate it: {exc}")
            continue
        graph.remove_node(node)
        for out, value in zip([o for o in node.outputs if o], results):
            graph.values.pop(out, None)
            graph.initializers[out] = np.asarray(value)
        count += 1
    return count
