"""Empirical bias correction: the mean output error per channel goes to ~0, exponents stay."""

from __future__ import annotations

import numpy as np
from onnx import helper
from qhelpers import make_model, random_batches

import espq
from espq.quant.bias_correction import correct_biases, keep_batches


def biased_model():
    """Conv → Relu → Conv whose small weights round with a sizeable per-channel mean error."""
    rng = np.random.default_rng(0)
    w1 = (rng.normal(0, 0.05, (6, 3, 3, 3)) + 0.004).astype(np.float32)
    w1[0, 0, 0, 0] = 1.0  # one big weight: a coarse per-tensor exponent on esp32s3
    w2 = (rng.normal(0, 0.05, (4, 6, 3, 3)) + 0.004).astype(np.float32)
    w2[0, 0, 0, 0] = 1.0
    inits = {"w1": w1, "b1": np.zeros(6, np.float32), "w2": w2, "b2": np.zeros(4, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], inits)


def _mean_error(qm, graph, x, tensor):
    q = qm.run(x, outputs=[tensor])[tensor]
    f = espq.run_float(graph, x, outputs=[tensor])[tensor]
    return (q - f).mean(axis=(0, 2, 3))


def test_bias_correction_removes_the_mean_output_error():
    model = biased_model()
    data = [b + 1.0 for b in random_batches([1, 3, 8, 8], n=4, batch=16)]
    original = espq.load(model)
    plain = espq.quantize(model, data, target="esp32s3", progress=False)
    setting = espq.QuantSetting(bias_correction=True)
    corrected = espq.quantize(model, data, target="esp32s3", setting=setting, progress=False)
    assert corrected.plan.tensors["b1"].exponent == plain.plan.tensors["b1"].exponent
    x = np.concatenate(data)
    for t in ("c1", "y"):
        before = np.abs(_mean_error(plain, original, x, t)).max()
        after = np.abs(_mean_error(corrected, original, x, t)).max()
        assert after < 0.2 * before, (t, before, after)
    assert not np.array_equal(corrected.graph.initializers["b2"], original.initializers["b2"])


def test_correct_biases_returns_the_changes_and_edits_in_place():
    model = biased_model()
    data = random_batches([1, 3, 8, 8], n=2, batch=8)
    qm = espq.quantize(model, data, target="esp32p4", progress=False)
    b2 = qm.graph.initializers["b2"].copy()
    feeds = [{"x": d} for d in data]
    changes = correct_biases(qm.graph, qm.plan, qm.target, feeds)
    assert set(changes) == {"b1", "b2"}
    np.testing.assert_allclose(qm.graph.initializers["b2"], b2 - changes["b2"], rtol=1e-6, atol=1e-7)


def test_keep_batches_stops_keeping_at_the_budget():
    feeds = [{"x": np.zeros((4, 10), np.float32)} for _ in range(5)]
    store: list = []
    assert len(list(keep_batches(iter(feeds), store, max_elements=100))) == 5
    assert len(store) == 3  # 40, 80, 120 >= 100
