"""Output-aware exponent search: repairs a clipping exponent, never raises the output error."""

from __future__ import annotations

import numpy as np
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches

import espq
from espq.quant.output_search import _with_group_exponent, search_output_exponents
from espq.quant.recipes import output_error
from espq.quant.spec import DERIVED


def _error(qm, plan, feeds) -> float:
    model = espq.QuantizedModel(qm.graph, plan, qm.target)
    return output_error(model.run(feeds), espq.run_float(qm.graph, feeds))


def test_a_clipping_exponent_is_repaired():
    data = random_batches([1, 3, 8, 8], n=2, batch=8, seed=3)
    qm = espq.quantize(conv_relu_add_model(), data, target="esp32s3", progress=False)
    feeds = {"x": np.concatenate(data)}
    group = qm.plan.tensors["r1"].group
    good = int(qm.plan.tensors["r1"].exponent)
    bad = _with_group_exponent(qm.plan, qm.graph, group, good - 3)  # 8x finer: heavy clipping
    assert bad.tensors["r1"].exponent == bad.tensors["c1"].exponent == good - 3  # the whole group
    # conv1's bias is derived from its input and weight exponents, untouched by r1's group
    assert qm.plan.tensors["b1"].source == DERIVED and bad.tensors["b1"] == qm.plan.tensors["b1"]
    found = search_output_exponents(qm.graph, bad, qm.target, feeds)
    assert found.tensors["r1"].exponent > good - 3
    assert _error(qm, found, feeds) < 0.5 * _error(qm, bad, feeds)
    # starting from the calibrated plan it never makes the outputs worse
    again = search_output_exponents(qm.graph, qm.plan, qm.target, feeds)
    assert _error(qm, again, feeds) <= _error(qm, qm.plan, feeds)


def test_clip_bounds_follow_a_changed_input_exponent():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, (2, 2, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Add", ["c", "x"], ["a"], name="add"),
        helper.make_node("Clip", ["a", "lo", "hi"], ["k"], name="clip"),
        helper.make_node("Sigmoid", ["k"], ["y"], name="sig"),
    ]
    m = make_model(
        nodes,
        [("x", [1, 2, 4, 4])],
        [("y", [1, 2, 4, 4])],
        {"w": w, "lo": np.array(-1.0, np.float32), "hi": np.array(1.0, np.float32)},
    )
    data = random_batches([1, 2, 4, 4], n=2, batch=4, seed=1)
    qm = espq.quantize(m, data, target="esp32p4", progress=False)
    group, e = qm.plan.tensors["a"].group, int(qm.plan.tensors["a"].exponent)
    moved = _with_group_exponent(qm.plan, qm.graph, group, e - 1)
    # the Clip's input exponent moved: its bounds take the new exponent too (they share the input's)
    assert qm.plan.input_spec("clip", 0, "a").exponent == qm.plan.tensors["lo"].exponent == e
    assert moved.input_spec("clip", 0, "a").exponent == moved.tensors["lo"].exponent == e - 1
    assert moved.tensors["hi"].exponent == e - 1
