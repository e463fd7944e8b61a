"""Automatic mixed precision: budgets, error target, report."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from qhelpers import make_model, random_batches

from espq.errors import ConfigError
from espq.ir.spec import S16
from espq.quant.mixed_precision import auto_mixed_precision
from espq.quant.recipes import output_error


def chain_model():
    """Three Conv+Relu layers with uneven channel ranges (int8-unfriendly) and a Gemm head."""
    rng = np.random.default_rng(0)
    inits = {}
    nodes = []
    src, cin = "x", 3
    for i in range(3):
        w = rng.normal(0, 0.3, (8, cin, 3, 3)) * 10 ** rng.uniform(-1.5, 1.0, (8, 1, 1, 1))
        inits[f"w{i}"] = w.astype(np.float32)
        inits[f"b{i}"] = rng.normal(0, 0.1, 8).astype(np.float32)
        nodes.append(
            helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1])
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        src, cin = f"r{i}", 8
    nodes.append(helper.make_node("GlobalAveragePool", [src], ["g"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["g"], ["f"], name="flat"))
    inits["wf"] = rng.normal(0, 0.5, (8, 5)).astype(np.float32)
    nodes.append(helper.make_node("Gemm", ["f", "wf"], ["y"], name="head"))
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 5])], inits)


DATA = random_batches([1, 3, 8, 8], n=3, batch=8, seed=1)


def test_layer_budget_is_respected_and_reported():
    qm = auto_mixed_precision(chain_model(), DATA, target="esp32s3", max_int16_layers=1, progress=False)
    rep = qm.amp_report
    int16_computing = [n for n in qm.plan.int16_nodes() if qm.graph.node(n).op_type in ("Conv", "Gemm")]
    assert int16_computing == rep.int16_layers and len(rep.int16_layers) == 1
    assert rep.error < rep.base_error
    assert rep.relative_latency > 1.0 and rep.size_bytes > rep.int8_size_bytes
    assert len(rep.ranking) == 4  # every quantized Conv/Gemm ranked
    assert rep.int16_layers[0] in rep.summary()


def test_error_target_is_reached_greedily():
    base = auto_mixed_precision(chain_model(), DATA, max_int16_layers=0, progress=False).amp_report
    target = base.base_error / 20
    qm = auto_mixed_precision(chain_model(), DATA, max_error=target, progress=False)
    rep = qm.amp_report
    assert rep.error <= target
    assert [e for _, e in rep.steps] == sorted((e for _, e in rep.steps), reverse=True)
    assert all(qm.plan.node_types[n] == S16 for n in rep.int16_layers)


def test_needs_a_budget():
    with pytest.raises(ConfigError, match="max_error"):
        auto_mixed_precision(chain_model(), DATA)


def test_output_error_is_the_per_sample_noise_ratio():
    f = {"y": np.array([[1.0, 0.0], [0.0, 2.0]])}
    q = {"y": np.array([[1.0, 0.5], [0.0, 2.0]])}
    assert output_error(q, f) == pytest.approx(0.25 / 2, rel=1e-6)


def test_size_budget_limits_promotions():
    base = auto_mixed_precision(chain_model(), DATA, max_int16_layers=0, progress=False).amp_report
    free = auto_mixed_precision(chain_model(), DATA, max_error=0.0, progress=False).amp_report
    assert len(free.int16_layers) >= 2
    # half the growth of promoting every layer: fewer promotions, all within the budget
    budget = base.int8_size_bytes + (free.size_bytes - base.int8_size_bytes) // 2
    capped = auto_mixed_precision(
        chain_model(), DATA, max_error=0.0, max_size_bytes=budget, progress=False
    ).amp_report
    assert capped.size_bytes <= budget
    assert len(capped.int16_layers) < len(free.int16_layers)
    none = auto_mixed_precision(
        chain_model(), DATA, max_error=0.0, max_size_bytes=base.int8_size_bytes, progress=False
    ).amp_report
    assert none.int16_layers == [] and none.size_bytes == base.int8_size_bytes


def spiky_chain_model():
    """conv0 -> Relu -> conv1 -> Relu -> conv2 (1x1): rare large input values that KL clips in int8."""
    rng = np.random.default_rng(0)
    inits = {
        "w0": np.eye(8, 4, dtype=np.float32)[:, :, None, None] * 0.5,
        "w1": rng.normal(0, 0.2, (8, 8, 1, 1)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (4, 8, 1, 1)).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0"),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2"),
    ]
    return make_model(nodes, [("x", [1, 4, 8, 8])], [("y", [1, 4, 8, 8])], inits)


def test_neighbours_look_through_one_input_ops_only():
    from qhelpers import conv_relu_add_model

    from espq import load
    from espq.quant.mixed_precision import neighbours

    g = load(conv_relu_add_model())
    conv1, conv2 = (n.name for n in g.nodes if n.op_type == "Conv")
    assert neighbours(g, conv2) == ([conv1], [])  # through Relu; its output joins an Add: not looked through
    assert neighbours(g, conv1) == ([], [conv2])
    chain = load(spiky_chain_model())
    assert neighbours(chain, "conv1") == (["conv0"], ["conv2"])


def test_greedy_promotes_producer_and_consumer_of_a_clipping_activation_together():
    """The int8 error sits in relu1's output (rare large values clipped): only conv1 and conv2 both int16
    remove it, which no single promotion shows; blind top-k with the same two layers barely helps."""
    rng = np.random.default_rng(1)
    data = [
        (rng.normal(0, 0.3, (8, 4, 8, 8)) + 20 * (rng.random((8, 4, 8, 8)) < 0.002)).astype(np.float32)
        for _ in range(3)
    ]
    greedy = auto_mixed_precision(spiky_chain_model(), data, max_int16_layers=2, progress=False).amp_report
    blind = auto_mixed_precision(
        spiky_chain_model(), data, max_int16_layers=2, strategy="top_k", progress=False
    ).amp_report
    assert len(greedy.int16_layers) == len(blind.int16_layers) == 2
    assert greedy.steps[0][0] in ("conv1+conv2", "conv2+conv1")  # one step, both layers
    assert greedy.error < 0.2 * greedy.base_error
    assert greedy.error < 0.2 * blind.error
