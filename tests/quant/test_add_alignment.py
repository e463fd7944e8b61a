"""Add/Sub alignment (issue 13 finding 4): the aligned exponent covers the inputs where the output's
range collapsed below theirs (``x - mean(x)``), and stays ESP-PPQ's 'Align to Output' elsewhere."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import espq
import espq.quant.calibrate as calibrate
from espq.quant.observers import TensorStats
from espq.quant.plan import PlanSkeleton
from espq.sim.integer import check_test_values


def _centered(layernorm: bool) -> onnx.ModelProto:
    """Conv (+3.0 offset) -> Sub(c, ReduceMean(c, channel axis)) [-> Pow/ReduceMean/Sqrt/Div] -> Conv.

    The reduction runs over axis 1 of NCHW, so fuse_layernorm (trailing axes only) leaves it unfused."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (8, 3, 1, 1)).astype(np.float32), "w1"),
        numpy_helper.from_array(np.full(8, 3.0, np.float32), "b1"),
        numpy_helper.from_array(rng.uniform(-0.5, 0.5, (4, 8, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1"),
        helper.make_node("ReduceMean", ["c"], ["m"], name="mean", axes=[1]),
        helper.make_node("Sub", ["c", "m"], ["d"], name="sub"),
    ]
    tail = "d"
    if layernorm:
        inits += [
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        ]
        nodes += [
            helper.make_node("Pow", ["d", "two"], ["p"], name="pow"),
            helper.make_node("ReduceMean", ["p"], ["v"], name="var", axes=[1]),
            helper.make_node("Add", ["v", "eps"], ["ve"], name="add_eps"),
            helper.make_node("Sqrt", ["ve"], ["s"], name="sqrt"),
            helper.make_node("Div", ["d", "s"], ["nrm"], name="div"),
        ]
        tail = "nrm"
    nodes.append(helper.make_node("Conv", [tail, "w2"], ["y"], name="conv2"))
    g = helper.make_graph(
        nodes,
        "centered",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _quantize(model, target: str, bits: int, gain: float | None = None):
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((8, 3, 6, 6)).astype(np.float32) for _ in range(4)]
    old = calibrate.COVER_GAIN
    calibrate.COVER_GAIN = old if gain is None else gain
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return espq.quantize(model, calib, target=target, bits=bits, progress=False)
    finally:
        calibrate.COVER_GAIN = old


def _nsr(q: np.ndarray, f: np.ndarray) -> float:
    return float(((q.astype(np.float64) - f) ** 2).sum() / (f.astype(np.float64) ** 2).sum())


@pytest.mark.parametrize(("target", "bits"), [("esp32p4", 8), ("esp32s3", 8), ("c", 8), ("esp32p4", 16)])
def test_sub_of_mean_keeps_both_operands(tmp_path, target, bits):
    """ESP-PPQ's rule fits the Sub to d = c - mean(c) (|d| < 2): at int8 the mean (about 3) saturates
    to one code and d loses its positive side; the covering rule keeps the mean and both signs of d."""
    model = _centered(layernorm=False)
    x = np.random.default_rng(1).standard_normal((16, 3, 6, 6)).astype(np.float32)
    qm = _quantize(model, target, bits)
    ppq = _quantize(model, target, bits, gain=-1.0)  # never raise: ESP-PPQ's 'Align to Output'
    ref = espq.load(model)
    f = espq.run_float(ref, x, outputs=["m", "d", "y"])
    assert f["m"].min() > 2.5 and f["d"].max() > 1.0
    got, old = qm.run(x, outputs=["m", "d", "y"]), ppq.run(x, outputs=["m", "d", "y"])
    e_c, e_d = qm.plan.tensors["c"].exponent, qm.plan.tensors["d"].exponent
    assert e_d >= e_c > ppq.plan.tensors["d"].exponent
    if bits == 8:  # the operands clipped to the same code (int16: c above 4 clips, d shifts)
        assert old["m"].max() < 2.0 and old["d"].max() <= 0.0
    assert np.abs(got["m"] - f["m"]).mean() <= 2.0**e_d and got["d"].max() > 1.0  # (c clips above 4)
    if bits == 8:
        assert _nsr(got["y"], f["y"]) < 0.05 < 0.5 < _nsr(old["y"], f["y"])
    else:
        assert _nsr(got["y"], f["y"]) < 1e-4 < _nsr(old["y"], f["y"])
    # the chain holds: fake-quant == runner on the exported file, embedded test values pass
    path = tmp_path / "c.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    assert check_test_values(path).ok
    e = qm.plan.tensors["y"].exponent
    chip = espq.run_espdl(path, x[:1])["y"]
    codes, chip_codes = np.rint(qm.run(x[:1])["y"] / 2.0**e), np.rint(chip / 2.0**e)
    np.testing.assert_array_equal(codes, chip_codes) if bits == 8 else np.testing.assert_allclose(
        codes, chip_codes, atol=1
    )


def test_decomposed_layernorm_int16_normalises():
    """The unfused LayerNorm at int16: normalised output within 1 % (ESP-PPQ's rule: 0.25 % NSR on the
    Div output is what is left after the clipped mean shifts every value)."""
    model = _centered(layernorm=True)
    x = np.random.default_rng(1).standard_normal((16, 3, 6, 6)).astype(np.float32)
    f = espq.run_float(espq.load(model), x, outputs=["nrm"])["nrm"]
    new = _quantize(model, "esp32p4", 16).run(x, outputs=["nrm"])["nrm"]
    old = _quantize(model, "esp32p4", 16, gain=-1.0).run(x, outputs=["nrm"])["nrm"]
    assert _nsr(new, f) < 1e-5 and _nsr(old, f) > 1e-3


def _stats(values: np.ndarray) -> TensorStats:
    s = TensorStats()
    s.update(torch.as_tensor(values))
    return s


def test_covering_exponent_rule():
    """Inputs that fit the output's exponent: unchanged (ResNet's Add); a collapsed output: raised."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal(4096).astype(np.float32)
    b = rng.standard_normal(4096).astype(np.float32)
    sk = PlanSkeleton(plan=None, group_masters={"g": ["s"]}, group_inputs={"g": ["a", "b"]})
    stats = {"a": _stats(a), "b": _stats(b), "s": _stats(a + b)}
    e = calibrate.observe_exponent(stats["s"], 8, "kl")
    assert calibrate.covering_exponent(sk, "g", e, stats, 8, "kl") == e
    far = {"a": _stats(a + 40.0), "b": _stats(np.full(4096, 40.0, np.float32)), "s": _stats(a)}
    e_out = calibrate.observe_exponent(far["s"], 8, "kl")
    e_in = calibrate.observe_exponent(far["a"], 8, "kl")
    assert e_in >= e_out + 3
    assert calibrate.covering_exponent(sk, "g", e_out, far, 8, "kl") == e_in
    assert calibrate.covering_exponent(PlanSkeleton(None, {"g": ["s"]}), "g", e_out, far, 8, "kl") == e_out
