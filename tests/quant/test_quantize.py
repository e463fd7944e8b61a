"""espq.quantize end to end: calibration input forms, save/load plan, errors, real models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from qhelpers import conv_relu_add_model, random_batches

import espq
from espq.errors import ConfigError, InputDataError, UnsupportedOpError


@pytest.fixture(scope="module")
def model():
    return conv_relu_add_model()


def test_fake_quant_outputs_are_on_the_grid(model):
    qm = espq.quantize(model, random_batches([1, 3, 8, 8]), target="esp32s3", progress=False)
    x = random_batches([1, 3, 8, 8], n=1, seed=5)[0]
    out = qm.run(x, outputs=["r1", "y"])
    for name in ("r1", "y"):
        e = qm.plan.tensors[name].exponent
        codes = out[name] / 2.0**e
        np.testing.assert_array_equal(codes, np.round(codes))
        assert codes.min() >= -128 and codes.max() <= 127
    f = qm.run_float(x)["y"]
    q = qm.run(x)["y"]
    assert 0 < np.sum((f - q) ** 2) / np.sum(f**2) < 0.01


def test_calibration_input_forms_give_the_same_plan(model):
    arrays = random_batches([1, 3, 8, 8], n=2)
    ref = espq.quantize(model, arrays, progress=False).plan.to_json()
    forms = [
        [torch.as_tensor(a) for a in arrays],
        [{"x": a} for a in arrays],
        [(a, np.zeros(4)) for a in arrays],  # (inputs, labels) pairs
        [[a] for a in arrays],
    ]
    for data in forms:
        assert espq.quantize(model, data, progress=False).plan.to_json() == ref
    dict_collate = espq.quantize(model, arrays, collate_fn=lambda b: {"x": b}, progress=False)
    assert dict_collate.plan.to_json() == ref


def test_steps_repeat_a_short_iterable_with_a_warning(model):
    arrays = random_batches([1, 3, 8, 8], n=2)
    with pytest.warns(UserWarning, match="repeating"):
        qm = espq.quantize(model, arrays, calib_steps=5, progress=False)
    assert qm.plan.tensors["y"].exponent is not None


def test_ragged_last_batch(model):
    arrays = random_batches([1, 3, 8, 8], n=2, batch=5)
    arrays.append(arrays[0][:3])
    espq.quantize(model, arrays, progress=False)


def test_save_and_reapply_plan(model, tmp_path):
    qm = espq.quantize(model, random_batches([1, 3, 8, 8]), target="c", progress=False)
    path = tmp_path / "plan.json"
    qm.save_plan(path)
    again = espq.quantize(model, None, target="c", plan=path, progress=False)
    assert again.plan.to_json() == qm.plan.to_json()
    x = random_batches([1, 3, 8, 8], n=1, seed=9)[0]
    np.testing.assert_array_equal(again.run(x)["y"], qm.run(x)["y"])
    with pytest.raises(ConfigError, match="target 'c'"):
        espq.quantize(model, None, target="esp32p4", plan=path, progress=False)


def test_bad_inputs(model):
    good = random_batches([1, 3, 8, 8])
    with pytest.raises(InputDataError, match=r"expected shape \[N, 3, 8, 8\].*got \[4, 3, 9, 8\]"):
        espq.quantize(model, [np.zeros((4, 3, 9, 8), np.float32)], progress=False)
    bad = [good[0], good[1].copy()]
    bad[1][0, 0, 0, 0] = np.nan
    with pytest.raises(InputDataError, match="batch 1.*NaN"):
        espq.quantize(model, bad, progress=False)
    with pytest.raises(InputDataError, match="empty"):
        espq.quantize(model, [], progress=False)
    with pytest.raises(ConfigError, match="bits must be 8 or 16"):
        espq.quantize(model, good, bits=4, progress=False)
    with pytest.raises(ConfigError, match="esp32p4.*esp32s3"):
        espq.quantize(model, good, target="esp32x9", progress=False)
    with pytest.raises(ConfigError, match="nope"):
        espq.quantize(model, good, setting=espq.QuantSetting(precision={"nope": 16}), progress=False)
    with pytest.raises(ConfigError, match="steps"):
        espq.quantize(model, good, calib_steps=0, progress=False)


def test_unsupported_ops_are_all_listed():
    from onnx import helper
    from qhelpers import make_model

    nodes = [
        helper.make_node("Erf", ["x"], ["a"], name="erf1"),
        helper.make_node("Cos", ["a"], ["b"], name="cos1"),
        helper.make_node("Erf", ["b"], ["y"], name="erf2"),
    ]
    m = make_model(nodes, [("x", [1, 4])], [("y", [1, 4])])
    with pytest.raises(UnsupportedOpError) as info:
        espq.quantize(m, [np.zeros((1, 4), np.float32)], progress=False)
    msg = str(info.value)
    assert "erf1" in msg and "erf2" in msg and "cos1" in msg


def test_no_warning_when_steps_match(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        espq.quantize(model, random_batches([1, 3, 8, 8], n=3), calib_steps=3, progress=False)


def test_calibration_statistics_equal_those_of_the_float_tensors():
    """One pass: every observed tensor's statistics equal TensorStats over its float values (ReLU outputs
    are binned from their inputs, which must not change a count)."""
    from espq.quant.calibrate import collect_statistics
    from espq.quant.observers import TensorStats
    from espq.sim.float import run_float

    graph = espq.load(conv_relu_add_model())
    batches = random_batches([1, 3, 8, 8], n=3, batch=4, seed=2)
    names = ["r1", "c2", "a", "y"]
    stats = collect_statistics(graph, names, iter({"x": b} for b in batches), progress=False)
    for name in names:
        expected = TensorStats()
        for b in batches:
            expected.update(torch.as_tensor(run_float(graph, {"x": b}, outputs=[name])[name]))
        got = stats[name]
        assert torch.equal(got.hist, expected.hist), name
        assert (got.min, got.max, got.count) == (expected.min, expected.max, expected.count), name
