"""Quality gate decision checks: a Softmax output's argmax (OCR recogniser at int8) and a Sigmoid
output's > 0.5 mask (text-probability map) against float, with the int16 fix."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from qhelpers import make_model

import espq
from espq.quant.quality import QualityWarning, _argmax_agreement


def rec_like_model():
    """x [N, 32, 16] -> MatMul -> Softmax over 32 classes; class 0 ("blank") has logits 60*x0 + 40 (wins
    on most frames, sets the int8 step to 2), the other classes differ by ~0.1: at int8 they round to
    the same code and the non-blank argmax is lost."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.05, (16, 32)).astype(np.float32)
    w[:, 0] = 0.0
    w[0, 0] = 60.0
    b = np.zeros(32, np.float32)
    b[0] = 40.0
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "b"], ["logits"], name="add"),
        helper.make_node("Softmax", ["logits"], ["p"], name="softmax", axis=-1),
    ]
    return make_model(nodes, [("x", [1, 32, 16])], [("p", [1, 32, 32])], {"w": w, "b": b})


def mask_like_model():
    """x [N, 1, 8, 8] -> 1x1 Conv to 4 channels (logit scales 100, 0.3, -0.3, 0.2) -> Sigmoid: the big
    channel sets the int8 step, the three small channels' logits round to 0 (sigmoid 0.5, no pixel on)."""
    w = np.array([100.0, 0.3, -0.3, 0.2], np.float32).reshape(4, 1, 1, 1)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["z"], name="conv"),
        helper.make_node("Sigmoid", ["z"], ["prob"], name="sigmoid"),
    ]
    return make_model(nodes, [("x", [1, 1, 8, 8])], [("prob", [1, 4, 8, 8])], {"w": w})


def batches(shape, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, *shape[1:])).astype(np.float32) for _ in range(n)]


def test_argmax_agreement_leaves_out_the_common_class():
    f = np.zeros((1, 8, 3))
    f[0, :6, 0] = 1.0  # 6 frames of class 0 (blank), 2 frames of class 2
    f[0, 6:, 2] = 1.0
    q = np.zeros_like(f)
    q[0, :, 0] = 1.0  # the quantized model says blank everywhere
    assert _argmax_agreement(f, q, -1) == (0.0, 2, "where float's class is not 0")
    assert _argmax_agreement(f, f, -1)[0] == 1.0
    assert _argmax_agreement(np.eye(4)[None], np.eye(4)[None], -1) == (1.0, 4, "in all")


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_softmax_argmax_damage_is_flagged_and_int16_fixes_it(target):
    data = batches([1, 32, 16])
    with pytest.warns(QualityWarning, match="argmax_disagreement"):
        qm = espq.quantize(rec_like_model(), data, target=target, progress=False)
    (finding,) = [f for f in qm.quality.findings if f.kind == "argmax_disagreement"]
    assert (finding.tensor, finding.op) == ("p", "softmax")
    agree = int(finding.damage.split("float's on ")[1].split("%")[0])
    assert agree < 50 and "where float's class is not 0" in finding.damage
    assert finding.fix.startswith("int16 for the whole model (bits=16)")
    assert set(finding.fix_args["precision"]) == {n for n, t in qm.plan.node_types.items() if t == "S8"}
    # the measured damage is real: on fresh data the non-blank argmax is mostly lost at int8
    x = batches([1, 32, 16], n=1, seed=7)[0]
    fa, qa = qm.run_float(x)["p"].argmax(-1), qm.run(x)["p"].argmax(-1)
    assert np.mean(qa[fa != 0] == fa[fa != 0]) < 0.5
    fixed = espq.quantize(rec_like_model(), data, target=target, progress=False, on_damage="fix")
    assert "argmax_disagreement" not in {f.kind for f in fixed.quality.findings}
    assert all(t != "S8" for t in fixed.plan.node_types.values())
    qa16 = fixed.run(x)["p"].argmax(-1)
    assert np.mean(qa16[fa != 0] == fa[fa != 0]) > 0.9


def test_sigmoid_mask_damage_is_flagged():
    data = batches([1, 1, 8, 8])
    with pytest.warns(QualityWarning, match="mask_disagreement"):
        qm = espq.quantize(mask_like_model(), data, progress=False)
    (finding,) = [f for f in qm.quality.findings if f.kind == "mask_disagreement"]
    assert (finding.tensor, finding.op) == ("prob", "sigmoid")
    iou = float(finding.damage.split("IoU ")[1].split(" ")[0])
    assert 0.15 < iou < 0.4  # only the big channel's pixels survive (about 1 in 4)
    x = batches([1, 1, 8, 8], n=1, seed=3)[0]
    q = qm.run(x)["prob"]
    assert not np.any(q[:, 1:] > 0.5) and np.any(qm.run_float(x)["prob"][:, 1:] > 0.5)


def test_healthy_softmax_and_sigmoid_outputs_pass():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1.0, (16, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
        helper.make_node("Softmax", ["m"], ["p"], name="softmax", axis=-1),
        helper.make_node("Sigmoid", ["m"], ["s"], name="sigmoid"),
    ]
    model = make_model(nodes, [("x", [1, 32, 16])], [("p", [1, 32, 8]), ("s", [1, 32, 8])], {"w": w})
    qm = espq.quantize(model, batches([1, 32, 16]), progress=False)
    kinds = {f.kind for f in qm.quality.findings}
    assert not kinds & {"argmax_disagreement", "mask_disagreement", "clipped_output"}
    # the sigmoid saturates: values at 1.0 above int8's 127/128 are within 2 steps, not clipping
    s = qm.run_float(batches([1, 32, 16])[1])["s"]
    assert np.mean(s > 127 / 128 + 2.0**-8) > 0.05
