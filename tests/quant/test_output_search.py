"""Output-aware exponent search: repairs a clipping exponent, never raises the output error."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches

import espq
from espq.ir.spec import DERIVED
from espq.quant.output_search import _with_group_exponent, search_output_exponents
from espq.quant.recipes import output_error


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


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_resuming_at_the_first_affected_node_equals_a_full_run(target):
    """The search scores a candidate from the current plan's tensors at the candidate's first affected
    node; for every group and step (requantize boundaries included) that equals running it in full."""
    import torch

    from espq.quant.output_search import _changed, _groups, first_affected_node
    from espq.sim.fakequant import FakeQuantSim

    data = random_batches([1, 3, 8, 8], n=2, batch=4, seed=5)
    setting = espq.QuantSetting(precision={"conv2": 16})  # int8 -> int16 -> int8 boundaries
    qm = espq.quantize(conv_relu_add_model(), data, target=target, setting=setting, progress=False)
    raw = {"x": torch.as_tensor(np.concatenate(data))}
    sim = FakeQuantSim(qm.graph, qm.plan, qm.target)
    starts = []
    for group, e in _groups(qm.plan, qm.graph):
        for step in (1, -1):
            candidate = _with_group_exponent(qm.plan, qm.graph, group, e + step)
            start = first_affected_node(sim.graph, list(qm.graph.inputs), *_changed(qm.plan, candidate))
            starts.append(start)
            live = sim.run_segment(sim.quantized_feeds(raw), 0, start)
            cand = FakeQuantSim(qm.graph, candidate, qm.target)
            resumed = cand.run_segment(cand.quantized_feeds(raw) if start == 0 else live, start)
            full = cand.run_torch(raw)
            for out in qm.graph.outputs:
                assert torch.equal(resumed[out], full[out]), (group, step, start)
    assert 0 in starts and max(starts) > 0  # both the input group and later groups resumed


def test_executor_segments_compose_to_a_full_run():
    import torch

    from espq.sim.float.executor import run_graph, run_segment

    graph = espq.load(conv_relu_add_model())
    x = torch.as_tensor(random_batches([1, 3, 8, 8], n=1, batch=2, seed=0)[0])
    full = run_graph(graph, {"x": x})
    env = {"x": x}
    for start in range(len(graph.nodes)):
        names = set(env)
        after = run_segment(graph, env, start, start + 1)
        assert set(env) == names  # the caller's tensors are left as they were (resumable)
        env = after
    assert torch.equal(env[graph.outputs[0]], full[graph.outputs[0]])
    assert set(env) == set(graph.outputs)  # everything no later node reads was freed


def test_groups_whose_first_node_comes_late_restart_the_kept_forward():
    """An Add with a constant operand: the constant joins the Add output's group and sorts that group
    first, though its first affected node is the Add, after the convolutions' groups."""
    rng = np.random.default_rng(2)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], name="conv3"),
        helper.make_node("Add", ["c3", "k"], ["y"], name="add"),
    ]
    inits = {
        "w1": rng.normal(0, 0.5, (4, 3, 1, 1)).astype(np.float32),
        "w2": rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32),
        "w3": rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32),
        "k": rng.normal(0, 2.0, (1, 4, 4, 4)).astype(np.float32),
    }
    m = make_model(nodes, [("x", [1, 3, 4, 4])], [("y", [1, 4, 4, 4])], inits)
    data = random_batches([1, 3, 4, 4], n=2, batch=4, seed=4)
    qm = espq.quantize(m, data, target="esp32p4", progress=False)
    assert qm.plan.tensors["k"].group == qm.plan.tensors["y"].group  # the constant is in the Add's group
    feeds = {"x": np.concatenate(data)}
    found = search_output_exponents(qm.graph, qm.plan, qm.target, feeds)
    assert _error(qm, found, feeds) <= _error(qm, qm.plan, feeds)
    # the same plan as the search done with a full fake-quant run per candidate
    from espq.quant.output_search import MIN_GAIN, _groups

    plan, best = qm.plan, _error(qm, qm.plan, feeds)
    for group, e0 in _groups(qm.plan, qm.graph):
        choice = (best, None)
        for e in (e0 + 1, e0 - 1):
            candidate = _with_group_exponent(plan, qm.graph, group, e)
            err = _error(qm, candidate, feeds)
            if err < choice[0] * (1.0 - MIN_GAIN):
                choice = (err, candidate)
        if choice[1] is not None:
            best, plan = choice
    assert found.tensors == plan.tensors and found.requant == plan.requant
