"""Cleanup passes: constants, identities, shape folding, constant folding, shape inference, dead code."""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.passes import (
    constant_to_initializer,
    fold_constants,
    fold_shape_ops,
    infer_shapes,
    remove_dead_nodes,
    remove_identity,
)

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand


def test_constant_to_initializer_all_forms():
    nodes = [
        node("Constant", [], ["t"], value=rand(4)),
        node("Constant", [], ["f"], value_float=2.5),
        node("Constant", [], ["fs"], value_floats=[1.0, 2.0, 3.0, 4.0]),
        node("Constant", [], ["i"], value_ints=[1, 4]),
        node("Constant", [], ["i0"], value_int=7),
        node("Add", ["x", "t"], ["a"]),
        node("Mul", ["a", "f"], ["b"]),
        node("Sub", ["b", "fs"], ["c"]),
        node("Reshape", ["c", "i"], ["y"]),
    ]
    g = build(nodes, {}, {"x": (4,)}, {"y": (1, 4)})
    before = g.copy()
    assert constant_to_initializer(g) == 5
    assert ops(g) == ["Add", "Mul", "Sub", "Reshape"]
    assert g.initializers["f"].dtype == np.float32 and g.initializers["f"].shape == ()
    assert g.initializers["i"].dtype == np.int64 and list(g.initializers["i"]) == [1, 4]
    assert int(g.initializers["i0"]) == 7
    np.testing.assert_array_equal(g.initializers["t"], before.nodes[0].attrs["value"])
    check_equivalent(before, g)
    assert constant_to_initializer(g) == 0


def test_constant_that_is_a_graph_output_is_kept():
    g = build([node("Constant", [], ["y"], value=rand(3))], {}, {}, {"y": (3,)})
    assert constant_to_initializer(g) == 0
    assert ops(g) == ["Constant"]


def test_remove_identity_and_dropout_keeps_output_names():
    nodes = [
        node("Identity", ["x"], ["a"]),
        node("Relu", ["a"], ["b"]),
        node("Dropout", ["b"], ["c", "mask"]),
        node("Sigmoid", ["c"], ["d"]),
        node("Identity", ["d"], ["y"]),
    ]
    g = build(nodes, {}, {"x": (2, 3)}, {"y": (2, 3)})
    before = g.copy()
    assert remove_identity(g) == 3
    assert ops(g) == ["Relu", "Sigmoid"]
    assert g.nodes[0].inputs == ["x"] and g.nodes[1].outputs == ["y"]
    check_equivalent(before, g)


def test_remove_identity_negative_cases():
    nodes = [
        node("Dropout", ["x"], ["c", "mask"]),  # mask is read
        node("Cast", ["mask"], ["m"], to=1),
        node("Add", ["c", "m"], ["z"]),
        node("Identity", ["x"], ["y"]),  # graph input -> graph output: would rename an output
    ]
    g = build(nodes, {}, {"x": (2, 3)}, {"z": (2, 3), "y": (2, 3)})
    assert remove_identity(g) == 0
    assert ops(g) == ["Dropout", "Cast", "Add", "Identity"]


def test_dropout_in_training_mode_is_kept():
    nodes = [node("Dropout", ["x", "", "train"], ["y"])]
    g = build(nodes, {"train": np.array(True)}, {"x": (2,)}, {"y": (2,)})
    assert remove_identity(g) == 0


def test_fold_shape_ops_and_constants_make_reshape_chain_constant():
    # Shape(x)[0:1] ++ [-1]  ->  Reshape(x, ...) : the usual dynamic-export idiom
    nodes = [
        node("Shape", ["x"], ["s"]),
        node("Gather", ["s", "idx0"], ["n"], axis=0),
        node("Unsqueeze", ["n", "ax0"], ["n1"]),
        node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        node("Reshape", ["x", "shape"], ["r"]),
        node("Shape", ["x"], ["s_tail"], start=-2),
        node("Cast", ["s_tail"], ["s_f"], to=1),
        node("ReduceSum", ["s_f"], ["tot"], keepdims=1),
        node("Add", ["r", "tot"], ["y"]),
    ]
    inits = {
        "idx0": np.array(0, np.int64),
        "ax0": np.array([0], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    g = build(nodes, inits, {"x": (2, 3, 4)}, {"y": (2, 12)})
    before = g.copy()
    assert fold_shape_ops(g) == 2
    assert list(g.initializers["s"]) == [2, 3, 4] and list(g.initializers["s_tail"]) == [3, 4]
    assert fold_constants(g) == 5
    assert ops(g) == ["Reshape", "Add"]
    assert list(g.initializers["shape"]) == [2, -1]
    np.testing.assert_allclose(g.initializers["tot"], [7.0])
    check_equivalent(before, g)
    remove_dead_nodes(g)
    assert set(g.initializers) == {"shape", "tot"}


def test_fold_shape_ops_needs_static_shape():
    g = build([node("Shape", ["x"], ["s"]), node("Cast", ["s"], ["y"], to=1)], {}, {"x": None}, {"y": None})
    assert fold_shape_ops(g) == 0


def test_fold_constants_skips_random_and_qdq(caplog):
    nodes = [
        node("RandomUniformLike", ["c"], ["r"]),
        node("DequantizeLinear", ["q", "sc"], ["dq"]),
        node("Add", ["x", "r"], ["a"]),
        node("Add", ["a", "dq"], ["y"]),
    ]
    inits = {"c": rand(3), "q": np.array([1, 2, 3], np.int8), "sc": np.array(0.5, np.float32)}
    g = build(nodes, inits, {"x": (3,)}, {"y": (3,)})
    with caplog.at_level(logging.DEBUG, logger="espq.ir.passes.fold_constants"):
        assert fold_constants(g) == 0
    assert "never folded" in caplog.text
    assert ops(g)[:2] == ["RandomUniformLike", "DequantizeLinear"]


def test_infer_shapes_learns_missing_shapes_only():
    nodes = [node("Relu", ["x"], ["a"]), node("Transpose", ["a"], ["y"], perm=[1, 0])]
    g = build(nodes, {}, {"x": (2, 5)}, {"y": None})
    assert g.shape("a") is None
    assert infer_shapes(g) == 2
    assert g.shape("a") == (2, 5) and g.shape("y") == (5, 2)
    assert infer_shapes(g) == 0


def test_remove_dead_nodes():
    nodes = [
        node("Relu", ["x"], ["y"]),
        node("Mul", ["x", "w"], ["dead"]),
        node("Sigmoid", ["dead"], ["dead2"]),
    ]
    g = build(nodes, {"w": rand(3), "unused": rand(2)}, {"x": (3,)}, {"y": (3,)})
    assert remove_dead_nodes(g) == 4  # 2 nodes + 2 initializers
    assert ops(g) == ["Relu"] and not g.initializers
    assert remove_dead_nodes(g) == 0
