"""PRelu with a per-channel ONNX slope (issue 13, fuzz regressions PRelu_*): ESP-DL reads alpha[c] along
``shape[3]`` of the input and wants a ``[C, 1, 1]`` slope, so the exporter stores the slope as
``[C, 1, 1]`` and brings the input to NHWC. Fake-quant, the integer runner and the float model agree."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import espq
from espq.errors import UnsupportedOpError
from espq.espdl.files import read

SLOPES = np.array([0.1, 0.5, 0.9], np.float32)


def _model(slope: np.ndarray, shape: list[int], pre_add: bool = False) -> onnx.ModelProto:
    """x -> [Add(x, 0.25)] -> PRelu(slope); the Add keeps the PRelu input an NCHW intermediate."""
    nodes, inits, cur = [], [numpy_helper.from_array(slope, "slope")], "x"
    if pre_add:
        inits.append(numpy_helper.from_array(np.float32(0.25).reshape(1), "b"))
        nodes.append(helper.make_node("Add", ["x", "b"], ["a"], name="add"))
        cur = "a"
    nodes.append(helper.make_node("PRelu", [cur, "slope"], ["y"], name="prelu"))
    g = helper.make_graph(
        nodes,
        "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def _float_prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x < 0, x * slope.reshape(1, -1, 1, 1), x)


@pytest.mark.parametrize(
    ("target", "bits"), [("esp32p4", 8), ("esp32s3", 8), ("c", 8), ("esp32p4", 16), ("c", 16)]
)
@pytest.mark.parametrize("slope_shape", [(3, 1, 1), (1, 3, 1, 1)])
@pytest.mark.parametrize("pre_add", [False, True], ids=["on_input", "on_intermediate"])
def test_per_channel_prelu_runs_channel_last(tmp_path, target, bits, slope_shape, pre_add):
    shape = [1, 3, 4, 5]
    rng = np.random.default_rng(3)
    calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(
            _model(SLOPES.reshape(slope_shape), shape, pre_add),
            calib,
            target=target,
            bits=bits,
            progress=False,
        )
    path = tmp_path / "m.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    g = read(path).graph
    assert g.initializers["slope"].dims == [3, 1, 1]
    prelu_in = next(n for n in g.nodes if n.op_type == "PRelu").inputs[0]
    vis = {vi.name: vi for vi in (*g.value_info, *g.inputs)}
    assert vis[prelu_in].shape == [1, 4, 5, 3]  # NHWC: alpha[c] runs along shape[3]
    x = rng.standard_normal(shape).astype(np.float32)
    ours = qm.run(x)["y"]
    chip = espq.run_espdl(path, x)["y"]
    assert chip.shape == ours.shape == tuple(shape)
    e = qm.plan.tensors["y"].exponent
    fq_codes, chip_codes = np.rint(ours / 2.0**e), np.rint(chip / 2.0**e)
    np.testing.assert_array_equal(fq_codes, chip_codes)
    assert espq.sim.integer.check_test_values(path).ok
    # the slope is per channel: channel 2 (slope 0.9) keeps most of its negative side, channel 0 (0.1)
    # little; the quantized output is within a few LSB of the float PRelu (input rounding + floor)
    ref = _float_prelu(x + (0.25 if pre_add else 0.0), SLOPES)
    assert np.abs(chip - ref).max() <= 3 * 2.0**e
    neg = (x + (0.25 if pre_add else 0.0)) < -0.5
    ratio = chip / np.where(neg, x + (0.25 if pre_add else 0.0), 1)
    assert abs(np.median(ratio[:, 0][neg[:, 0]]) - 0.1) < 0.05
    assert abs(np.median(ratio[:, 2][neg[:, 2]]) - 0.9) < 0.05


@pytest.mark.parametrize(("target", "bits"), [("esp32p4", 8), ("esp32s3", 8), ("c", 16)])
@pytest.mark.parametrize(("shape", "slope_shape"), [([32, 3], (3,)), ([8, 3, 5], (3, 1))], ids=["2d", "3d"])
def test_per_channel_prelu_on_2d_and_3d_runs_as_4d(tmp_path, target, bits, shape, slope_shape):
    """PRelu after a Linear layer ([N, C], MTCNN R-/O-Net) or on [N, C, L]: exported as Reshape -> 4-D
    NHWC PRelu -> Reshape; fake-quant == integer runner, per-channel slopes kept."""
    rng = np.random.default_rng(5)
    calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(
            _model(SLOPES.reshape(slope_shape), shape, pre_add=True), calib, target=target, bits=bits,
            progress=False,
        )  # fmt: skip
    path = tmp_path / "m.espdl"
    qm.export(path, export_test_values=True, export_config=False)
    g = read(path).graph
    prelu = next(n for n in g.nodes if n.op_type == "PRelu")
    assert g.initializers[prelu.inputs[1]].dims == [3, 1, 1]
    vis = {vi.name: vi for vi in (*g.value_info, *g.inputs)}
    in_shape = vis[prelu.inputs[0]].shape
    assert len(in_shape) == 4 and in_shape[3] == 3  # NHWC, alpha[c] along shape[3]
    x = rng.standard_normal(shape).astype(np.float32)
    ours, chip = qm.run(x)["y"], espq.run_espdl(path, x)["y"]
    assert chip.shape == ours.shape == tuple(shape)
    e = qm.plan.tensors["y"].exponent
    np.testing.assert_array_equal(np.rint(ours / 2.0**e), np.rint(chip / 2.0**e))
    assert espq.sim.integer.check_test_values(path).ok
    a = x + 0.25
    neg = a < -0.5
    ratio = chip / np.where(neg, a, 1)
    assert abs(np.median(ratio[:, 0][neg[:, 0]]) - 0.1) < 0.05
    assert abs(np.median(ratio[:, 2][neg[:, 2]]) - 0.9) < 0.05


@pytest.mark.parametrize(("slope_shape", "shape"), [((5,), [1, 3, 4, 5]), ((4,), [1, 3, 4])])
def test_prelu_slope_the_chip_cannot_run_is_refused(tmp_path, slope_shape, shape):
    """A slope along W ([5] broadcasts on the last ONNX axis, [4] on the last of a 3-D input): ESP-DL
    indexes alpha by channel only, so export raises naming the node instead of writing a wrong file."""
    rng = np.random.default_rng(0)
    slope = rng.uniform(0.1, 0.9, slope_shape).astype(np.float32)
    calib = [rng.standard_normal(shape).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(_model(slope, shape), calib, target="esp32p4", bits=16, progress=False)
    with pytest.raises(UnsupportedOpError, match=r"node 'prelu' \(PRelu\): slope shape"):
        qm.export(tmp_path / "m.espdl")
    assert not (tmp_path / "m.espdl").exists()
