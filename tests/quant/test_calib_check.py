"""Degenerate calibration (issue 14 finding 2): wrong data is refused, dead activations are warned about."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from qhelpers import conv_relu_add_model, make_model, random_batches

import espq
from espq.errors import CalibrationError, InputDataError
from espq.quant.calib_check import CalibrationWarning


def _quantize(model, data, **kw):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        qm = espq.quantize(model, data, progress=False, **kw)
    return qm, [str(w.message) for w in seen if issubclass(w.category, CalibrationWarning)]


@pytest.mark.parametrize(
    ("scale", "match"),
    [
        (0.0, r"input 'x' is all zero over 768 values"),
        (1e-30, r"input 'x': its largest \|value\| 3\.\d+e-30 is below half the smallest int8 step 2\^-27"),
        (1e30, r"input 'x' needs exponent 95 at int8 .* outside ESP-DL's \[-64, 64\]"),
    ],
)
def test_wrong_scale_is_an_error(scale: float, match: str) -> None:
    data = [b * scale for b in random_batches([1, 3, 8, 8], n=1)]
    with pytest.raises(CalibrationError, match=match) as info:
        espq.quantize(conv_relu_add_model(), data, progress=False)
    assert isinstance(info.value, InputDataError)  # the CLI's exit 2 family
    assert "normalisation" in str(info.value) and "\n" not in str(info.value)


def test_constant_single_input_is_an_error() -> None:
    data = [np.full((4, 3, 8, 8), 0.25, np.float32)]
    with pytest.raises(CalibrationError, match=r"'x' holds the single value 0\.25 over 768 values"):
        espq.quantize(conv_relu_add_model(), data, progress=False)


def test_floored_input_warns_with_its_codes() -> None:
    data = [b * 1e-9 for b in random_batches([1, 3, 8, 8], n=1)]
    _, seen = _quantize(conv_relu_add_model(), data)
    assert any("'x' uses only codes -1..1 of int8's -127..127" in m for m in seen), seen


def test_good_data_is_silent() -> None:
    _, seen = _quantize(conv_relu_add_model(), random_batches([1, 3, 8, 8]))
    assert seen == []


def _dead_relu_model() -> onnx.ModelProto:
    """x -> Conv (weights -1; x > 0 below) -> Relu -> r (always 0); x -> Conv (weights 1) -> y."""
    nodes = [
        helper.make_node("Conv", ["x", "wn"], ["c"], name="conv_neg"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Conv", ["x", "wp"], ["y"], name="conv_pos"),
    ]
    inits = {"wn": -np.ones((3, 3, 1, 1), np.float32), "wp": np.ones((3, 3, 1, 1), np.float32)}
    shape = [1, 3, 4, 4]
    return make_model(nodes, [("x", shape)], [("r", shape), ("y", shape)], inits)


def test_dead_relu_is_a_warning_naming_it() -> None:
    data = [np.abs(b) + 0.1 for b in random_batches([1, 3, 4, 4])]
    qm, seen = _quantize(_dead_relu_model(), data)
    assert len(seen) == 1, seen
    assert "1 activation(s) are exactly zero on all calibration data ('r')" in seen[0]
    x = data[0][:1]
    want = x.sum(axis=1, keepdims=True).repeat(3, axis=1)
    step = 2.0 ** qm.plan.tensors["y"].exponent
    np.testing.assert_allclose(qm.run(x)["y"], want, atol=2 * step)  # output + input rounding


def test_collapsed_graph_output_is_an_error() -> None:
    """Inputs fine, but the output is sigmoid(x - 80) ~ 1e-35: every output code would be 0."""
    nodes = [
        helper.make_node("Add", ["x", "k"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["y"], name="sigmoid"),
    ]
    k = np.full((1, 4), -80.0, np.float32)
    m = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])], {"k": k})
    match = r"graph output 'y': its largest \|value\| .* every output code is 0"
    with pytest.raises(CalibrationError, match=match):
        espq.quantize(m, random_batches([1, 4]), progress=False)


def test_multi_input_constant_input_warns() -> None:
    nodes = [helper.make_node("Add", ["x", "m"], ["y"], name="add")]
    model = make_model(nodes, [("x", [1, 4]), ("m", [1, 4])], [("y", [1, 4])])
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((4, 4)).astype(np.float32), "m": np.ones((4, 4), np.float32)}]
    _, seen = _quantize(model, data)
    assert any("input(s) 'm' are constant" in m for m in seen), seen


def test_cli_all_zero_calibration_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from espq.cli import app

    model = tmp_path / "m.onnx"
    onnx.save(conv_relu_add_model(), model)
    calib = tmp_path / "c.npy"
    np.save(calib, np.zeros((4, 3, 8, 8), np.float32))
    out = tmp_path / "o.espdl"
    r = CliRunner().invoke(app, ["quantize", str(model), "--calib", str(calib), "--out", str(out)])
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "calibration input 'x' is all zero" in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy", "m.onnx"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weight_is_a_load_error(bad: float) -> None:
    """bench/fuzz_onnx.py --quantize: a NaN/Inf weight crashed the observers (ValueError/OverflowError)."""
    from espq.errors import ModelLoadError

    m = conv_relu_add_model()
    w = onnx.numpy_helper.to_array(m.graph.initializer[0]).copy()
    w[0, 0, 0, 0] = bad
    m.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(w, m.graph.initializer[0].name))
    with pytest.raises(ModelLoadError, match=r"initializer 'w1' \(input of node 'conv1'\) holds"):
        espq.quantize(m, random_batches([1, 3, 8, 8]), progress=False)
