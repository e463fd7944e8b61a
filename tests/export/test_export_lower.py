"""Each export rewrite on a tiny hand-built graph + plan: before/after (espq.export.lower)."""

from __future__ import annotations

import numpy as np
import pytest

from espq.errors import UnsupportedOpError
from espq.export.lower import (
    ExportState,
    drop_empty_optional_inputs,
    fuse_relu,
    fuse_transposes,
    insert_quant_nodes,
    prepare_dynamic_matmul,
    prepare_gemm,
    to_channel_last,
)
from espq.export.weights import matmul_weight_layout
from espq.ir import Graph, Node
from espq.ir.graph import TensorInfo
from espq.ir.spec import QuantPlan, TensorSpec
from espq.sim.float import run_float
from espq.targets import get_target

F = np.float32


def make(nodes, values, inputs, outputs, inits=None, types=None, specs=None, requant=None, fused=None,
         target="esp32p4") -> ExportState:  # fmt: skip
    g = Graph(
        nodes,
        {k: np.asarray(v) for k, v in (inits or {}).items()},
        {k: TensorInfo(np.dtype(F), tuple(s)) for k, s in values.items()},
        inputs,
        outputs,
    )
    plan = QuantPlan(target, 8, dict(types or {n.name: "S8" for n in nodes}), dict(specs or {}))
    plan.requant.update(requant or {})
    plan.fused.update(fused or {})
    return ExportState.from_model(g, plan, get_target(target))


def s8(e: int) -> TensorSpec:
    return TensorSpec(bits=8, exponent=e)


# ---------------------------------------------------------------------------- fuse_relu
def test_fuse_relu_takes_relu_name_and_sets_activation():
    st = make(
        [Node("c1", "Conv", ["x", "w1"], ["a"]), Node("r", "Relu", ["a"], ["b"]),
         Node("c2", "Conv", ["b", "w2"], ["y"])],
        {"x": (1, 2, 4, 4), "a": (1, 2, 4, 4), "b": (1, 2, 4, 4), "y": (1, 2, 4, 4)},
        ["x"], ["y"], inits={"w1": np.ones((2, 2, 1, 1), F), "w2": np.ones((2, 2, 1, 1), F)},
        specs={"x": s8(-5), "a": s8(-4), "b": s8(-4), "y": s8(-3)}, fused={"c1": "r"},
    )  # fmt: skip
    assert fuse_relu(st) == 1
    ops = [(n.name, n.op_type, n.outputs, n.attrs["activation"]) for n in st.graph.nodes]
    assert ops == [("c1", "Conv", ["b"], "Relu"), ("c2", "Conv", ["y"], "Linear")]
    assert "a" not in st.specs and "a" not in st.graph.values


# ---------------------------------------------------------------------------- prepare_gemm
def test_prepare_gemm_transposes_weight_and_axis():
    w = np.arange(6, dtype=F).reshape(3, 2)  # [N=3, C=2] with transB = 1
    st = make(
        [Node("g", "Gemm", ["x", "w", "b"], ["y"], {"transB": 1})],
        {"x": (1, 2), "y": (1, 3)}, ["x"], ["y"], inits={"w": w, "b": np.zeros(3, F)},
        specs={"w": TensorSpec(8, (-1, -2, -3), axis=0)},
    )  # fmt: skip
    assert prepare_gemm(st) == 1
    np.testing.assert_array_equal(st.graph.initializers["w"], w.T)
    assert st.graph.nodes[0].attrs["transB"] == 0 and st.params["w"].axis == 1


def test_prepare_gemm_rejects_alpha():
    gemm = Node("g", "Gemm", ["x", "w"], ["y"], {"alpha": 2.0})
    st = make([gemm], {"x": (1, 2), "y": (1, 2)}, ["x"], ["y"], inits={"w": np.ones((2, 2), F)})
    with pytest.raises(UnsupportedOpError, match="alpha"):
        prepare_gemm(st)


# ---------------------------------------------------------------------------- quant nodes
def test_insert_quant_requant_dequant():
    nodes = [
        Node("f", "Sin", ["x"], ["a"]),  # float producer
        Node("q1", "Relu", ["a"], ["b"]),  # needs QuantizeLinear
        Node("add", "Add", ["b", "c"], ["d"]),  # input 0 needs e -3, input 1 same exponent (no node)
        Node("sm", "Sin", ["d"], ["y"]),  # F32 consumer: DequantizeLinear
    ]
    vals = {k: (1, 4) for k in "xabcdy"}
    st = make(
        nodes, vals, ["x", "c"], ["y"], types={"f": "F32", "q1": "S8", "add": "S8", "sm": "F32"},
        specs={"b": s8(-5), "c": s8(-3), "d": s8(-3)},
        requant={"q1:0": s8(-6), "add:0": s8(-3), "add:1": s8(-3)},
    )  # fmt: skip
    counts = insert_quant_nodes(st)
    assert counts == {"QuantizeLinear": 1, "RequantizeLinear": 1, "DequantizeLinear": 1}
    g = st.graph
    ops = [n.op_type for n in g.nodes]
    assert ops == ["Sin", "QuantizeLinear", "Relu", "RequantizeLinear", "Add", "DequantizeLinear", "Sin"]
    q, rq, dq = g.nodes[1], g.nodes[3], g.nodes[5]
    assert g.initializers[q.inputs[1]] == np.float32(2.0**-6) and g.initializers[q.inputs[2]].dtype == np.int8
    assert st.specs[q.outputs[0]].exponent == -6 and q.attrs["quant_type"] == "S8"
    assert g.initializers[rq.inputs[1]] == np.float32(4.0)  # 2^(-3 - -5)
    assert st.specs[rq.outputs[0]].exponent == -3 and g.nodes[4].inputs == [rq.outputs[0], "c"]
    assert dq.attrs["quant_type"] == "F32" and g.initializers[dq.inputs[1]] == np.float32(2.0**-3)
    assert dq.outputs[0] not in st.specs


# ---------------------------------------------------------------------------- channel last
def _conv(name, x, y, c=4):
    return Node(name, "Conv", [x, f"{name}_w"], [y], {"kernel_shape": [1, 1]})


def _conv_inits(*names, c=4):
    return {f"{n}_w": np.ones((c, c, 1, 1), F) for n in names}


def test_channel_last_conv_flatten_inserts_transpose():
    st = make(
        [_conv("c", "x", "a"), Node("fl", "Flatten", ["a"], ["y"], {"axis": 1})],
        {"x": (1, 4, 3, 5), "a": (1, 4, 3, 5), "y": (1, 60)}, ["x"], ["y"], inits=_conv_inits("c"),
        specs={"x": s8(-5), "a": s8(-4), "y": s8(-4)},
    )  # fmt: skip
    assert to_channel_last(st) == 1
    g = st.graph
    assert [n.op_type for n in g.nodes] == ["Conv", "Transpose", "Flatten"]
    assert g.nodes[1].attrs["perm"] == [0, 3, 1, 2] and g.nodes[1].attrs["quant_type"] == "S8"
    assert st.exported_shape("x") == [1, 3, 5, 4] and st.exported_shape("a") == [1, 3, 5, 4]
    assert st.exported_shape(g.nodes[1].outputs[0]) == [1, 4, 3, 5]
    assert st.specs[g.nodes[1].outputs[0]].exponent == -4


def test_channel_last_axis_remapping_negative_axes():
    v = {"x": (1, 4, 3, 5), "a": (1, 4, 3, 5), "b": (1, 4, 3, 5), "cat": (1, 8, 3, 5), "sm": (1, 8, 3, 5),
         "r": (1, 8, 5), "p": (1, 8, 5, 7), "s": (1, 8, 5, 2)}  # fmt: skip
    nodes = [
        _conv("c1", "x", "a"),
        _conv("c2", "x", "b"),
        Node("cat", "Concat", ["a", "b"], ["cat"], {"axis": -3}),
        Node("sm", "Softmax", ["cat"], ["sm"], {"axis": 1}),
        Node("r", "ReduceMean", ["sm", "axes"], ["r"], {"keepdims": 0}),
        Node("p", "Pad", ["sm", "pads"], ["p"], {"mode": "constant"}),
        Node("s", "Slice", ["p", "st", "en", "ax"], ["s"]),
    ]
    inits = _conv_inits("c1", "c2") | {
        "axes": np.array([-2], np.int64),
        "pads": np.array([0, 0, 0, 1, 0, 0, 0, 1], np.int64),
        "st": np.array([0], np.int64), "en": np.array([2], np.int64), "ax": np.array([-1], np.int64),
    }  # fmt: skip
    st = make(nodes, v, ["x"], ["r", "s"], inits=inits)
    assert to_channel_last(st) == 0
    g = st.graph
    assert g.node("cat").attrs["axis"] == 3 and g.node("sm").attrs["axis"] == 3
    # ReduceMean over H (orig axis 2) -> exported axis 1; output [1, 8, 5] loses H: NWC-like (0, 2, 1)
    np.testing.assert_array_equal(g.initializers["axes"], [1])
    assert st.perm("r") == (0, 2, 1) and st.exported_shape("r") == [1, 5, 8]
    # pads [n, c, h, w] -> [n, h, w, c]
    np.testing.assert_array_equal(g.initializers["pads"], [0, 0, 1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(g.initializers["ax"], [2])  # W: orig 3 (-1) -> exported 2
    assert st.exported_shape("s") == [1, 5, 2, 8]


def test_channel_last_broadcast_constant_expanded_and_transpose_composed():
    v = {"x": (1, 4, 3, 5), "a": (1, 4, 3, 5), "m": (1, 4, 3, 5), "t": (1, 3, 5, 4)}
    nodes = [
        _conv("c", "x", "a"),
        Node("mul", "Mul", ["a", "k"], ["m"]),
        Node("tr", "Transpose", ["m"], ["t"], {"perm": [0, 2, 3, 1]}),
    ]
    k = np.arange(4, dtype=F).reshape(4, 1, 1)
    st = make(nodes, v, ["x"], ["t"], inits=_conv_inits("c") | {"k": k})
    to_channel_last(st)
    g = st.graph
    assert g.initializers["k"].shape == (1, 1, 1, 4)
    np.testing.assert_array_equal(g.initializers["k"].reshape(-1), np.arange(4))
    assert g.node("tr").attrs["perm"] == [0, 1, 2, 3] and st.perm("t") == (0, 1, 2, 3)
    # the identity Transpose stays: graph output t is [1,3,5,4] in ONNX, the Mul output [1,4,3,5]
    # (NHWC on the chip); without it the file would describe t in the Mul's layout (issue 13)
    assert fuse_transposes(st) == 0
    assert [n.op_type for n in g.nodes] == ["Conv", "Mul", "Transpose"] and g.nodes[-1].outputs == ["t"]
    assert g.outputs == ["t"] and st.exported_shape("t") == [1, 3, 5, 4]


def test_channel_last_conv1d_and_fuse_chain():
    v = {"x": (1, 4, 6), "a": (1, 4, 6), "t1": (1, 6, 4), "t2": (1, 4, 6), "y": (1, 24)}
    nodes = [
        Node("c", "Conv", ["x", "w"], ["a"], {"kernel_shape": [1]}),
        Node("t1", "Transpose", ["a"], ["t1"], {"perm": [0, 2, 1]}),
        Node("t2", "Transpose", ["t1"], ["t2"], {"perm": [0, 2, 1]}),
        Node("fl", "Flatten", ["t2"], ["y"], {"axis": 1}),
    ]
    st = make(nodes, v, ["x"], ["y"], inits={"w": np.ones((4, 4, 1), F)})
    to_channel_last(st)
    assert st.exported_shape("a") == [1, 6, 4]
    removed = fuse_transposes(st)
    ops = [(n.op_type, n.attrs.get("perm")) for n in st.graph.nodes]
    # conv output NWC -> NCW needed by Flatten: the chain collapses to one Transpose [0, 2, 1]
    assert ops == [("Conv", None), ("Transpose", [0, 2, 1]), ("Flatten", None)] and removed == 1


# ---------------------------------------------------------------------------- dynamic MatMul
@pytest.mark.parametrize("target,n", [("esp32p4", 32), ("esp32p4", 20), ("esp32p4", 6), ("c", 20)])
def test_dynamic_matmul_operand_matches_constant_layout(target, n):
    c = 5
    v = {"a": (2, 3, c), "b": (2, c, n), "y": (2, 3, n)}
    st = make([Node("mm", "MatMul", ["a", "b"], ["y"])], v, ["a", "b"], ["y"], target=target,
              specs={"a": s8(-4), "b": s8(-4), "y": s8(-3)})  # fmt: skip
    assert prepare_dynamic_matmul(st) == 1
    prepared = st.graph.node("mm").inputs[1]
    assert st.specs[prepared].exponent == -4
    assert all(n.attrs["quant_type"] == "S8" for n in st.graph.nodes)
    b = np.random.default_rng(0).integers(-100, 100, (2, c, n)).astype(F)
    a = np.zeros((2, 3, c), F)
    out = run_float(st.graph, {"a": a, "b": b}, outputs=[prepared])[prepared]
    assert out.shape == (2, c, n)
    expected, _, _ = matmul_weight_layout(b.astype(np.int64), get_target(target), 8)
    np.testing.assert_array_equal(out.reshape(-1), expected)


# ---------------------------------------------------------------------------- empty optional inputs
def test_empty_resize_roi_becomes_absent():
    inits = {"roi": np.zeros(0, F), "scales": np.array([1, 1, 2, 2], F)}
    st = make([Node("rs", "Resize", ["x", "roi", "scales"], ["y"])], {"x": (1, 2, 2, 2), "y": (1, 2, 4, 4)},
              ["x"], ["y"], inits=inits)  # fmt: skip
    assert drop_empty_optional_inputs(st) == 1
    assert st.graph.nodes[0].inputs == ["x", "", "scales"] and "roi" not in st.graph.initializers
