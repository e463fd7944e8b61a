"""Tiny graphs for quantization unit tests."""

from __future__ import annotations

import numpy as np
import onnx
from graph_builders import make_model as build_model
from onnx import helper


def make_model(nodes, inputs, outputs, inits=None, opset=18) -> onnx.ModelProto:
    """A ModelProto from node protos, (name, shape) inputs/outputs and name->array initializers."""
    return build_model(nodes, inputs, outputs, inits, opset, name="t")


def conv_relu_add_model(seed: int = 0) -> onnx.ModelProto:
    """x -> Conv1 -> Relu1 -> Conv2 -> Add(Relu1) -> MaxPool -> out; a second branch Conv3 (2 consumers)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 4).astype(np.float32)
    w2 = rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "r1"], ["a"], name="add"),
        helper.make_node("MaxPool", ["a"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ]
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 4, 4])], {"w1": w1, "b1": b1, "w2": w2})


def random_batches(shape, n: int = 2, batch: int = 4, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *shape[1:])).astype(np.float32) for _ in range(n)]
