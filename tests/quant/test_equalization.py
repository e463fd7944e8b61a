"""Layerwise equalization: ESP-PPQ's pair discovery rules and exact function preservation."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from qhelpers import make_model

import espq
from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir.onnx_io import graph_from_onnx
from espq.quant.equalization import EqualizationSetting, equalize, equalize_pair, find_pairs


def _w(rng, *shape, spread=2.0):
    """Weights whose output channels have very different ranges (10^±spread)."""
    w = rng.normal(0, 1, shape)
    return (w * 10 ** rng.uniform(-spread, spread, (shape[0],) + (1,) * (len(shape) - 1))).astype(np.float32)


def discovery_graph() -> Graph:
    """A → Relu → B → Relu → MaxPool → C; C + D(x) → Add → Relu → E → Clip(0, 6) → F → y."""
    rng = np.random.default_rng(0)
    inits = {f"w{k}": _w(rng, 4, 4 if k not in "AD" else 3, 3, 3) for k in "ABCDEF"}
    inits.update({f"b{k}": rng.normal(0, 0.1, 4).astype(np.float32) for k in "ABCDEF"})
    inits.update({"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)})

    def conv(k, x, y):
        return helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [y], name=f"conv{k}", pads=[1, 1, 1, 1])

    nodes = [
        conv("A", "x", "a"),
        helper.make_node("Relu", ["a"], ["ra"], name="reluA"),
        conv("B", "ra", "b"),
        helper.make_node("Relu", ["b"], ["rb"], name="reluB"),
        helper.make_node("MaxPool", ["rb"], ["pb"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        conv("C", "pb", "c"),
        conv("D", "x", "d"),
        helper.make_node("Add", ["c", "d"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["rs"], name="reluS"),
        conv("E", "rs", "e"),
        helper.make_node("Clip", ["e", "lo", "hi"], ["ce"], name="clip"),
        conv("F", "ce", "y"),
    ]
    return graph_from_onnx(make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], inits))


def _pairs(graph, **kw):
    return [(p.upstream, p.downstream) for p in find_pairs(graph, EqualizationSetting(**kw))]


def test_pair_discovery_level1_stops_at_add_and_clip():
    assert _pairs(discovery_graph()) == [(["convA"], ["convB"]), (["convB"], ["convC"])]


def test_pair_discovery_level2_goes_through_add():
    assert _pairs(discovery_graph(), opt_level=2) == [
        (["convA"], ["convB"]),
        (["convB"], ["convC"]),
        (["convC", "convD"], ["convE"]),
    ]


def test_interested_layers_restrict_upstream():
    assert _pairs(discovery_graph(), interested_layers=["convB"]) == [(["convB"], ["convC"])]


def test_clip_to_relu_opens_the_pair_and_is_opt_in():
    g = discovery_graph()
    equalize(g, EqualizationSetting(clip_to_relu=True, iterations=1))
    assert "Clip" not in {n.op_type for n in g.nodes}
    assert (["convE"], ["convF"]) in _pairs(g)


def test_graph_output_inside_the_region_blocks_the_pair():
    g = discovery_graph()
    g.outputs.append("ra")  # reluA's output is now observable: rescaling convA would change it
    assert (["convA"], ["convB"]) not in _pairs(g)


def _nsr(a, b):
    return float(((a - b) ** 2).sum() / (b**2).sum())


def conv_chain_graph() -> Graph:
    """Conv → Relu → depthwise Conv → LeakyRelu → AveragePool → Conv → Relu → Conv (grouped, 2 groups)."""
    rng = np.random.default_rng(1)
    inits = {
        "w1": _w(rng, 8, 3, 3, 3),
        "b1": rng.normal(0, 1, 8).astype(np.float32),
        "w2": _w(rng, 8, 1, 3, 3),
        "b2": rng.normal(0, 1, 8).astype(np.float32),
        "w3": _w(rng, 6, 8, 1, 1),
        "w4": _w(rng, 4, 3, 3, 3),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("LeakyRelu", ["c2"], ["r2"], name="lrelu", alpha=0.1),
        helper.make_node("AveragePool", ["r2"], ["p2"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "w3"], ["c3"], name="conv3"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("Conv", ["r3", "w4"], ["y"], name="grouped", group=2, pads=[1, 1, 1, 1]),
    ]
    return graph_from_onnx(make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 4, 4])], inits))


def gemm_chain_graph() -> Graph:
    rng = np.random.default_rng(2)
    inits = {
        "w1": _w(rng, 16, 10).T.copy(),  # transB = 0: [K, N]
        "b1": rng.normal(0, 1, 16).astype(np.float32),
        "w2": _w(rng, 12, 16),  # transB = 1: [N, K]
        "b2": rng.normal(0, 1, 12).astype(np.float32),
        "w3": _w(rng, 5, 12),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["g1"], name="gemm1"),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["g2"], name="gemm2", transB=1),
        helper.make_node("PRelu", ["g2", "slope"], ["r2"], name="prelu"),
        helper.make_node("Gemm", ["r2", "w3"], ["y"], name="gemm3", transB=1),
    ]
    inits["slope"] = np.full((12,), 0.2, np.float32)
    return graph_from_onnx(make_model(nodes, [("x", [4, 10])], [("y", [4, 5])], inits))


@pytest.mark.parametrize("make", [conv_chain_graph, gemm_chain_graph])
@pytest.mark.parametrize("level", [1, 2])
def test_equalization_keeps_the_float_function(make, level):
    g = make()
    shape = g.shape(g.inputs[0])
    x = np.random.default_rng(3).normal(0, 1, (4, *shape[1:])).astype(np.float32)
    before = espq.run_float(g, x)[g.outputs[0]]
    eq = g.copy()
    pairs = equalize(eq, EqualizationSetting(opt_level=level, iterations=10))
    assert len(pairs) == (3 if make is conv_chain_graph else 2)
    after = espq.run_float(eq, x)[g.outputs[0]]
    assert _nsr(after, before) < 1e-7
    changed = [k for k in g.initializers if not np.array_equal(g.initializers[k], eq.initializers[k])]
    assert changed  # the weights did move


def test_one_step_balances_the_channel_ranges():
    g = gemm_chain_graph()
    setting = EqualizationSetting(value_threshold=0.0)
    pair = find_pairs(g, setting)[0]
    w1, w2 = g.initializers["w1"].copy(), g.initializers["w2"].copy()
    s = equalize_pair(g, pair, setting)
    up, down = np.abs(w1).max(axis=0), np.abs(w2).max(axis=0)  # per shared channel (16)
    expected = np.clip(np.sqrt(down / up), 0.1, 10.0)
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    np.testing.assert_allclose(g.initializers["w1"], w1 * expected[None, :], rtol=1e-5)
    np.testing.assert_allclose(g.initializers["w2"], w2 / expected[None, :], rtol=1e-5)
    np.testing.assert_allclose(
        g.initializers["b1"] / expected, gemm_chain_graph().initializers["b1"], rtol=1e-5
    )


def test_value_threshold_keeps_small_channels():
    g = gemm_chain_graph()
    s = equalize_pair(g, find_pairs(g, EqualizationSetting())[0], EqualizationSetting(value_threshold=1e9))
    assert np.all(s == 1.0)


def test_bad_settings_raise():
    with pytest.raises(ConfigError, match="opt_level"):
        equalize(gemm_chain_graph(), EqualizationSetting(opt_level=3))


def test_resnet20_level2_keeps_the_function(shared):
    g = espq.load(shared("models", "cifar10_resnet20.onnx"))
    x = np.random.default_rng(0).normal(0, 1, (2, 3, 32, 32)).astype(np.float32)
    before = espq.run_float(g, x)[g.outputs[0]]
    eq = g.copy()
    assert len(equalize(eq, EqualizationSetting(opt_level=2))) == 9
    assert _nsr(espq.run_float(eq, x)[g.outputs[0]], before) < 1e-7
