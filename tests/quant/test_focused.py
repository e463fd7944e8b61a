"""Focused quantization (issue 18 item 3, ESP-PPQ's quant_config_modify): fixed power-of-two output scales
by op name, through espq's QuantSetting and through ESP-PPQ's settings object."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import espq
from espq.api import QuantizationSettingFactory, espdl_quantize_onnx
from espq.errors import ConfigError
from espq.quant.setting import QuantSetting
from espq.sim.integer import IntegerRunner


def _model(path) -> None:
    """x -> Conv 'logits' -> Sigmoid; x -> Conv 'feat' -> Relu (fused: 'feat' is governed by the Relu)."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 1, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["l"], "logits", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["l"], ["p"], "sig"),
        helper.make_node("Conv", ["x", "w2"], ["f"], "feat"),
        helper.make_node("Relu", ["f"], ["r"], "relu"),
    ]
    g = helper.make_graph(
        nodes, "focused",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 6, 6]) for n in ("p", "r")],
        [w1, w2],
    )  # fmt: skip
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("focused") / "m.onnx"
    _model(path)
    return path


DATA = [np.random.default_rng(1).standard_normal((4, 3, 6, 6)).astype(np.float32)]


def _exp(qm, tensor: str) -> int:
    return int(qm.plan.tensors[tensor].exponent)


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_output_scale_fixes_the_exponent_and_export_agrees(onnx_path, tmp_path, target):
    plain = espq.quantize(str(onnx_path), DATA, target=target, progress=False)
    observed = _exp(plain, "l")
    want = observed - 2  # a finer step than calibration chose: the exponent must move
    qm = espq.quantize(
        str(onnx_path), DATA, target=target, progress=False,
        setting=QuantSetting(output_scales={"logits": 2.0**want}),
    )  # fmt: skip
    assert _exp(qm, "l") == want and _exp(qm, "r") == _exp(plain, "r")
    qm.export(tmp_path / "f.espdl", export_test_values=True)
    runner = IntegerRunner(tmp_path / "f.espdl")
    x = DATA[0][:1]
    got = runner.run({"x": x}, outputs=["p", "r"])
    sim = qm.run({"x": x})
    for name in ("p", "r"):
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(sim[name]))


def test_governed_output_is_skipped_with_a_message(onnx_path, caplog):
    plain = espq.quantize(str(onnx_path), DATA, progress=False)
    with caplog.at_level(logging.WARNING, logger="espq.quant.focused"):
        qm = espq.quantize(
            str(onnx_path), DATA, progress=False,
            setting=QuantSetting(output_scales={"feat": 2.0**-9}),
        )  # fmt: skip
    assert _exp(qm, "f") == _exp(plain, "f") != -9
    assert "skipped 'feat'" in caplog.text and "'relu'" in caplog.text


@pytest.mark.parametrize(
    "scales, match",
    [
        ({"logits": 0.1}, "power-of-two"),
        ({"logits": -0.25}, "power-of-two"),
        ({"logit": 0.25}, "did you mean 'logits'"),
        ({"sig_nope_xyz": 0.25}, "no op named 'sig_nope_xyz'"),
    ],
)
def test_bad_custom_config_is_one_config_error(onnx_path, scales, match):
    with pytest.raises(ConfigError, match=match):
        espq.quantize(str(onnx_path), DATA, progress=False, setting=QuantSetting(output_scales=scales))


def test_esp_ppq_settings_object(onnx_path, tmp_path):
    setting = QuantizationSettingFactory.espdl_setting()
    setting.quant_config_modify = True
    setting.quant_config_modify_setting.custom_config = {"logits": 0.0625}
    qm = espdl_quantize_onnx(
        str(onnx_path), str(tmp_path / "e.espdl"), calib_dataloader=[torch.from_numpy(DATA[0])],
        calib_steps=1, input_shape=[1, 3, 6, 6], target="esp32p4", setting=setting, error_report=False,
    )  # fmt: skip
    assert _exp(qm, "l") == -4
