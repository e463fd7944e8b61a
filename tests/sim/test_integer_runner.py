"""IntegerRunner API: targets, input/output layouts and quantisation, errors, check_test_values, CLI."""

from __future__ import annotations

import numpy as np
import pytest
from espdl_builders import ZOO, conv_weight, init, model, node, vi

from espq.errors import ConfigError, InputDataError, UnsupportedOpError
from espq.espdl import read
from espq.sim.integer import (
    CheckReport,
    IntegerRunner,
    NoTestValuesError,
    check_test_values,
    run_espdl,
)
from espq.sim.integer.cli import run_cli
from espq.sim.integer.layout_replay import layout_perms

I8 = np.int8


def _relu_conv_model(target="esp32p4"):
    """x [1,3,4,2] NHWC (ONNX [1,2,3,4]) -> 1x1 Conv (identity weights, ReLU) -> Flatten -> y [1, 24]."""
    w = np.zeros((2, 2, 1, 1), dtype=I8)
    w[0, 0] = w[1, 1] = 64  # e_w = -6: weight 1.0
    conv = node("Conv", ["x", "w"], ["c"], pads=[0, 0, 0, 0], strides=[1, 1], group=1, activation="Relu")
    tr = node("Transpose", ["c"], ["t"], perm=[0, 3, 1, 2])
    fl = node("Flatten", ["t"], ["y"], axis=1)
    return model(
        [conv, tr, fl],
        [vi("x", I8, [1, 3, 4, 2], -4)],
        [vi("y", I8, [1, 24], -4)],
        [conv_weight("w", w, -6, blocked=True)],
        [vi("c", I8, [1, 3, 4, 2], -4), vi("t", I8, [1, 2, 3, 4], -4)],
        target=target,
    )


def test_layout_rule_and_float_io():
    m = _relu_conv_model()
    r = IntegerRunner(m)
    assert r.perm("x") == (0, 2, 3, 1) and r.perm("c") == (0, 2, 3, 1)
    assert r.perm("t") is None and r.perm("y") is None
    assert r.original_shape("x") == (1, 2, 3, 4) and r.original_shape("c") == (1, 2, 3, 4)
    x = np.arange(-12, 12, dtype=np.float32).reshape(1, 2, 3, 4) / 16  # ONNX layout, on the 2^-4 grid
    out = r.run({"x": x})
    np.testing.assert_array_equal(out["y"], np.maximum(x, 0).reshape(1, 24))
    # intermediates come back dequantised in their ONNX layout
    inter = r.run({"x": x}, outputs=["c"])["c"]
    assert inter.shape == (1, 2, 3, 4)
    np.testing.assert_array_equal(inter, np.maximum(x, 0))
    raw = r.run({"x": np.transpose(x * 16, (0, 2, 3, 1)).astype(I8)}, raw=True, outputs=["c", "y"])
    assert raw["c"].dtype == I8 and raw["c"].shape == (1, 3, 4, 2)
    np.testing.assert_array_equal(raw["y"], np.maximum(x * 16, 0).reshape(1, 24).astype(I8))


@pytest.mark.parametrize(
    ("target", "expect"), [("esp32p4", [0, 2, -2, 2]), ("esp32s3", [1, 3, -1, 2]), ("c", [1, 3, -1, 2])]
)
def test_float_inputs_quantise_with_target_rounding(target, expect):
    nd = node("Identity", ["x"], ["y"])
    m = model([nd], [vi("x", I8, [4], -1)], [vi("y", I8, [4], -1)], target=target)
    x = np.array([0.25, 1.25, -0.75, 300.0], dtype=np.float32)  # x·2 = 0.5, 2.5, -1.5, 600 (saturates)
    got = run_espdl(m, {"x": x}, raw=False)["y"]
    np.testing.assert_array_equal(got * 2, np.array(expect[:3] + [127], dtype=np.float32))


def test_input_forms_and_errors():
    m = _relu_conv_model()
    r = IntegerRunner(m)
    x = np.zeros((1, 2, 3, 4), dtype=np.float32)
    assert r.run(x)["y"].shape == (1, 24)  # a bare array for a single-input model
    with pytest.raises(InputDataError, match=r"expects shape \[1, 2, 3, 4\].*got \[1, 3, 4, 2\]"):
        r.run({"x": np.zeros((1, 3, 4, 2), np.float32)})
    with pytest.raises(InputDataError, match="must be int8"):
        r.run({"x": np.zeros((1, 3, 4, 2), np.int16)}, raw=True)
    with pytest.raises(InputDataError, match="missing"):
        r.run({"z": x})
    with pytest.raises(ConfigError, match="neither graph inputs nor node outputs"):
        r.run(x, outputs=["nope"])


def test_unknown_op_and_missing_target():
    nd = node("FancyOp", ["x"], ["y"])
    m = model([nd], [vi("x", I8, [4])], [vi("y", I8, [4])])
    with pytest.raises(UnsupportedOpError, match=r"node 'FancyOp_y' op 'FancyOp'"):
        IntegerRunner(m)
    m2 = model([node("Identity", ["x"], ["y"])], [vi("x", I8, [4])], [vi("y", I8, [4])], target=None)
    with pytest.raises(ConfigError, match="esp32p4.*esp32s3"):
        IntegerRunner(m2)
    assert IntegerRunner(m2, "s3").target.name == "esp32s3"


def test_layout_perms_propagate_through_passive_and_reduce():
    conv = node("Conv", ["x", "w"], ["c"], pads=[0, 0, 0, 0], strides=[1, 1], group=1)
    relu = node("Relu", ["c"], ["r"])
    red = node("ReduceMean", ["r", "ax"], ["m"], keepdims=0)
    w = conv_weight("w", np.ones((2, 2, 1, 1), I8), 0, blocked=True)
    ax = init("ax", np.array([1], np.int64), np.int64)
    m = model(
        [conv, relu, red],
        [vi("x", I8, [1, 3, 4, 2])],
        [vi("m", I8, [1, 4, 2])],
        [w, ax],
        [vi("c", I8, [1, 3, 4, 2]), vi("r", I8, [1, 3, 4, 2])],
    )
    perms = layout_perms(m)
    assert perms["r"] == (0, 2, 3, 1)
    assert perms["m"] == (0, 2, 1)  # H reduced: exported [N, W, C] = original [N, C, W] permuted


def test_check_test_values_report_and_errors(tmp_path):
    path = ZOO / "optest_esp32p4_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    rep = check_test_values(path)
    assert isinstance(rep, CheckReport) and rep.ok and rep.target == "esp32p4"
    assert all(t.mismatches == 0 and t.max_abs_diff == 0 for t in rep.tensors)
    assert "PASS" in rep.format()
    # tamper with one expected value: int8 must match exactly
    m = read(path)
    t = next(iter(m.graph.test_outputs.values()))
    vals = t.values()
    vals[0] = vals[0] + 1 if vals[0] < 127 else vals[0] - 1
    t.raw = vals.tobytes()
    bad = check_test_values(m)
    assert not bad.ok and bad.tensors[0].mismatches == 1 and "FAIL" in bad.format()
    m.graph.test_inputs.clear()
    with pytest.raises(NoTestValuesError, match="export_test_values=True"):
        check_test_values(m)


def test_int16_comparison_allows_one_lsb():
    from espq.sim.integer.base import QTensor
    from espq.sim.integer.check import compare_tensor

    ref = init("r", np.array([10, -5, 7], np.int16), np.int16, -3)
    ok = compare_tensor("r", QTensor(np.array([11, -5, 6], np.int16), -3), ref)
    assert ok.ok and ok.max_abs_diff == 1
    bad = compare_tensor("r", QTensor(np.array([12, -5, 7], np.int16), -3), ref)
    assert not bad.ok and bad.mismatches == 1
    wrong_exp = compare_tensor("r", QTensor(np.array([10, -5, 7], np.int16), -4), ref)
    assert not wrong_exp.ok and "exponent" in wrong_exp.reason
    fref = init("f", np.array([1.0, np.nan], np.float32), np.float32)
    assert compare_tensor("f", QTensor(np.array([1.0 + 1e-5, np.nan], np.float32)), fref).ok


def test_run_cli_exit_codes(tmp_path, capsys):
    path = ZOO / "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    assert run_cli(str(path), [], None, None, check=True) == 0
    assert "PASS" in capsys.readouterr().out
    assert run_cli(str(tmp_path / "missing.espdl"), [], None, None, check=False) == 2
    r = IntegerRunner(path)
    x = np.linspace(-1, 1, int(np.prod(r.original_shape(r.input_names[0])))).astype(np.float32)
    np.save(tmp_path / "x.npy", x.reshape(r.original_shape(r.input_names[0])))
    out = tmp_path / "out.npz"
    assert run_cli(str(path), [str(tmp_path / "x.npy")], str(out), None, check=False) == 0
    saved = np.load(out)
    np.testing.assert_array_equal(
        saved[r.output_names[0]], r.run({r.input_names[0]: np.load(tmp_path / "x.npy")})[r.output_names[0]]
    )
    assert run_cli(str(path), ["nope=x.npy"], None, None, check=False) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    zoo_no_tests = ZOO / "imagenet_cls_mobilenetv2_s8_v1_p4.espdl"
    if zoo_no_tests.exists():
        assert run_cli(str(zoo_no_tests), [], None, "esp32p4", check=True) == 2


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_streaming_model_in_chunks_matches_full_model(target):
    """StreamingCache keeps the last window−1 frames between runs: feeding the 24-frame test input in
    chunks of 3 reproduces the chip's output of the whole-sequence model (same weights)."""
    full_p = ZOO / f"streaming_{target}_model.espdl"
    stream_p = ZOO / f"streaming_{target}_streaming_model.espdl"
    if not (full_p.exists() and stream_p.exists()):
        pytest.skip("streaming models not present")
    full = read(full_p)
    assert check_test_values(full, target).ok
    x = full.graph.test_inputs["input.1"].values().reshape(1, 24, 16)
    ref = full.graph.test_outputs["164"].values()
    r = IntegerRunner(stream_p, target)
    for _ in range(2):  # the second pass checks reset()
        outs = [r.run({"input.1": x[:, i : i + 3]}, raw=True)["164"] for i in range(0, 24, 3)]
        np.testing.assert_array_equal(outs[-1].reshape(-1), ref)
        r.reset()
    fresh = r.run({"input.1": x[:, 21:24]}, raw=True)["164"]
    assert not np.array_equal(fresh.reshape(-1), ref)  # without history the output differs


def test_mobilenet_zoo_runs_in_float_layout():
    path = ZOO / "imagenet_cls_mobilenetv2_s8_v1_s3.espdl"
    if not path.exists():
        pytest.skip(f"{path} not present")
    r = IntegerRunner(path, "esp32s3")
    name = r.input_names[0]
    assert r.original_shape(name) == (1, 3, 224, 224)
    x = np.random.default_rng(0).normal(size=(1, 3, 224, 224)).astype(np.float32)
    y = r.run({name: x})[r.output_names[0]]
    assert y.shape == (1, 1000) and y.dtype == np.float32 and np.isfinite(y).all() and y.std() > 0
