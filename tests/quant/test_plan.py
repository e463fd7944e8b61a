"""Plan rules: fusion sharing, passive ops, alignment, derivation, requantize boundaries, mixed precision."""

from __future__ import annotations

import numpy as np
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches

import espq
from espq.ir.spec import DERIVED, OBSERVED, SHARED
from espq.quant.plan import build_plan
from espq.quant.quantize import node_types_from_report
from espq.targets import check_model, get_target


def skeleton_for(model, target="esp32p4", bits=8, overrides=None):
    g = espq.load(model)
    tgt = get_target(target)
    rep = check_model(g, tgt, bits, overrides=overrides)
    types = node_types_from_report(g, rep, overrides or {})
    return g, build_plan(g, types, tgt, bits)


def test_conv_relu_share_spec_and_fusion_is_recorded():
    g, sk = skeleton_for(conv_relu_add_model())
    p = sk.plan
    assert p.fused == {"conv1": "relu1"}
    # conv1's output joins relu1's group; relu1 has two consumers (conv2, add) so add cannot absorb it
    assert p.tensors["c1"].group == p.tensors["r1"].group
    # c2 (single consumer: add, conv is not passive) is aligned to the Add output
    assert p.tensors["c2"].group == p.tensors["a"].group
    # r1 has two consumers: it keeps its own spec and the Add input is requantized to the Add's
    assert p.tensors["r1"].group != p.tensors["a"].group
    assert p.requant["add:1"].group == p.tensors["a"].group
    # MaxPool output keeps its input's spec (passive)
    assert p.tensors["y"].group == p.tensors["a"].group
    # weights observed per channel on p4, bias derived with 32-bit range
    assert p.tensors["w1"].source == OBSERVED and p.tensors["w1"].axis == 0
    assert p.tensors["b1"].source == DERIVED and p.tensors["b1"].bits == 32
    assert p.tensors["b1"].ref == ("conv1:0", "w1")


def test_s3_weights_per_tensor_and_20_bit_bias():
    _, sk = skeleton_for(conv_relu_add_model(), target="esp32s3")
    assert sk.plan.tensors["w1"].axis is None
    assert sk.plan.tensors["b1"].bits == 20


def test_exponents_resolved_and_derived_bias_per_channel():
    qm = espq.quantize(conv_relu_add_model(), random_batches([1, 3, 8, 8]), target="esp32p4", progress=False)
    p = qm.plan
    e_in = p.tensors["x"].exponent
    e_w = p.tensors["w1"].exponent
    assert isinstance(e_w, tuple) and len(e_w) == 4
    assert p.tensors["b1"].exponent == tuple(e_in + e for e in e_w)
    assert p.tensors["c1"].exponent == p.tensors["r1"].exponent
    assert p.tensors["y"].exponent == p.tensors["a"].exponent == p.requant["add:1"].exponent
    assert all(s.exponent is not None for s in p.tensors.values())


def test_mixed_precision_boundary_and_relu_follows_conv():
    _, sk = skeleton_for(conv_relu_add_model(), overrides={"conv1": 16})
    p = sk.plan
    assert p.node_types["conv1"] == "S16" and p.node_types["relu1"] == "S16"
    assert p.node_types["conv2"] == "S8"
    assert p.tensors["r1"].bits == 16
    # int8 consumers of the int16 tensor requantize it to 8 bit
    assert p.requant["conv2:0"].bits == 8 and p.requant["add:1"].bits == 8
    # the graph input is quantized at its (int16) consumer's width
    assert p.tensors["x"].bits == 16


def test_float_override_and_quantize_boundary():
    _, sk = skeleton_for(conv_relu_add_model(), overrides={"relu1": "float"})
    p = sk.plan
    assert p.node_types["relu1"] == "F32"
    assert "r1" not in p.tensors  # float tensor
    assert p.requant["conv2:0"].bits == 8 and p.requant["conv2:0"].source == OBSERVED
    assert p.fused == {}


def test_concat_aligned_and_clip_bounds_share_input():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (2, 2, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Clip", ["x", "lo", "hi"], ["k"], name="clip"),
        helper.make_node("Concat", ["c", "k"], ["y"], name="cat", axis=1),
    ]
    m = make_model(
        nodes,
        [("x", [1, 2, 4, 4])],
        [("y", [1, 4, 4, 4])],
        {"w": w, "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)},
    )
    _, sk = skeleton_for(m)
    p = sk.plan
    assert p.tensors["c"].group == p.tensors["y"].group == p.tensors["k"].group
    assert p.tensors["lo"].source == SHARED and p.tensors["lo"].ref == ("clip:0",)


def test_comparison_inputs_share_one_spec_from_all_ranges():
    nodes = [helper.make_node("Greater", ["a", "b"], ["y"], name="gt")]
    m = make_model(nodes, [("a", [1, 8]), ("b", [1, 8])], [("y", [1, 8])])
    g = espq.load(m)
    g.values["y"].dtype = np.dtype(bool)
    batches = [{"a": np.full((2, 8), 0.5, np.float32), "b": np.full((2, 8), 40.0, np.float32)}]
    qm = espq.quantize(g, batches, progress=False)
    p = qm.plan
    assert p.requant["gt:0"].exponent == p.requant["gt:1"].exponent
    assert 127 * 2.0 ** p.requant["gt:0"].exponent >= 40.0


def _add_act_model(act: str, extra_consumer: bool = False):
    """x -> Conv -> Add(x) -> act -> out (Clip to [0, 6]); optionally the Add output is also an output."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (2, 2, 1, 1)).astype(np.float32)
    inputs = ["a", "lo", "hi"] if act == "Clip" else ["a"]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "x"], ["a"], name="add"),
        helper.make_node(act, inputs, ["y"], name="act"),
    ]
    outs = [("y", [1, 2, 4, 4])] + ([("a", [1, 2, 4, 4])] if extra_consumer else [])
    inits = {"w": w, "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}
    return make_model(nodes, [("x", [1, 2, 4, 4])], outs, inits)


def test_any_op_shares_its_only_consumer_relu_or_clip_spec():
    for act in ("Relu", "Clip"):
        _, sk = skeleton_for(_add_act_model(act))
        p = sk.plan
        # Add -> act: one group decided by the activation's output (ESP-PPQ's fuse_relu_clip) ...
        assert p.tensors["a"].group == p.tensors["y"].group == p.tensors["c"].group
        assert sk.group_masters[p.tensors["y"].group] == ["y"]
        # ... but only Conv/Gemm/MatMul + Relu are fused into one node at export
        assert p.fused == {}


def test_activation_does_not_share_a_spec_read_elsewhere():
    _, sk = skeleton_for(_add_act_model("Relu", extra_consumer=True))
    p = sk.plan
    assert p.tensors["a"].group != p.tensors["y"].group
    assert sk.group_masters[p.tensors["a"].group] == ["a"]
