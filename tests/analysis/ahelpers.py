"""Model builders for the analysis tests."""

from __future__ import annotations

import onnx
from graph_builders import make_model as build_model


def make_model(nodes, inputs, outputs, inits=None, opset=18) -> onnx.ModelProto:
    """A ModelProto from node protos, (name, shape) inputs/outputs and name->array initializers."""
    return build_model(nodes, inputs, outputs, inits, opset, name="toy")
