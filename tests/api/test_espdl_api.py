"""The ESP-PPQ-compatible API: a seed-tutorial-style script with only the import line changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mobilenet_v2 import MobileNetV2, convert_relu6_to_relu

import espq
from espq.api import (
    QuantizationSetting,
    QuantizationSettingFactory,
    TargetPlatform,
    espdl_quantize_onnx,
    espdl_quantize_torch,
    get_target_platform,
)
from espq.errors import ConfigError, InputDataError, ModelLoadError
from espq.espdl import read, validate

TARGET = "esp32p4"


@pytest.mark.slow
def test_seed_tutorial_script_runs_with_only_the_import_changed(tmp_path):
    torch.manual_seed(0)
    model = convert_relu6_to_relu(MobileNetV2().eval())
    calib = [torch.randn(2, 3, 224, 224) for _ in range(3)]

    # --- the tutorial's settings code, unchanged ---
    quant_setting = QuantizationSettingFactory.espdl_setting()
    quant_setting.dispatching_table.append(
        "/features/features.1/conv/conv.0/conv.0.0/Conv", get_target_platform(TARGET, 16)
    )
    quant_setting.dispatching_table.append(
        "/features/features.1/conv/conv.1/Conv", get_target_platform(TARGET, 16)
    )
    quant_setting.equalization = True
    quant_setting.equalization_setting.iterations = 4
    quant_setting.equalization_setting.value_threshold = 0.4
    quant_setting.equalization_setting.opt_level = 2
    quant_setting.equalization_setting.interested_layers = None
    out = tmp_path / "mobilenet_v2.espdl"
    qm = espdl_quantize_torch(
        model=model,
        espdl_export_file=str(out),
        calib_dataloader=calib,
        calib_steps=3,
        input_shape=[1, 3, 224, 224],
        target=TARGET,
        num_of_bits=8,
        setting=quant_setting,
        device="cpu",
        error_report=False,
        skip_export=False,
        export_test_values=True,
        verbose=0,
    )
    # --- checks ---
    for suffix in (".espdl", ".info", ".json", ".onnx"):
        assert out.with_suffix(suffix).exists(), suffix
    validate(out)
    f = read(out)
    assert f.target == "esp32p4"
    s16 = [n.name for n in f.graph.nodes if n.attr("quant_type") == "S16"]
    assert "/features/features.1/conv/conv.0/conv.0.0/Conv" in s16
    x = calib[0][:1].numpy()
    ours = qm.run(x)[qm.graph.outputs[0]]
    chip = espq.run_espdl(out, x)[qm.graph.outputs[0]]
    e = qm.plan.tensors[qm.graph.outputs[0]].exponent
    np.testing.assert_array_equal(np.round(ours / 2.0**e), np.round(chip / 2.0**e))


def _tiny_onnx(tmp_path):
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(64, 2)
    )
    path = tmp_path / "tiny.onnx"
    from espq.frontends import export_torch

    path.write_bytes(export_torch(m, input_shape=[1, 3, 6, 6]).SerializeToString())
    return path


def test_onnx_entry_point_writes_files_and_never_touches_the_input(tmp_path):
    src = _tiny_onnx(tmp_path)
    before = src.read_bytes()
    calib = [np.random.default_rng(i).standard_normal((4, 3, 6, 6)).astype(np.float32) for i in range(2)]
    out = tmp_path / "out" / "tiny.espdl"
    qm = espdl_quantize_onnx(
        str(src),
        str(out),
        calib,
        2,
        [1, 3, 6, 6],
        target="esp32s3",
        error_report=False,
        export_test_values=True,
        metadata_props={"k": "v"},
    )
    assert src.read_bytes() == before
    assert read(out).metadata_props == {"target": "esp32s3", "k": "v"}
    assert isinstance(qm, espq.QuantizedModel)
    # seeded test values: a second export is byte-identical
    out2 = tmp_path / "out2" / "tiny.espdl"
    espdl_quantize_onnx(
        str(src),
        str(out2),
        calib,
        2,
        [1, 3, 6, 6],
        target="esp32s3",
        error_report=False,
        export_test_values=True,
        metadata_props={"k": "v"},
    )
    assert out.read_bytes() == out2.read_bytes()
    assert espq.sim.integer.check_test_values(out).ok


def test_bad_arguments(tmp_path):
    src = _tiny_onnx(tmp_path)
    calib = [np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)]  # zeros: refused
    args = (str(src), str(tmp_path / "o.espdl"), calib, 1, [1, 3, 6, 6])
    with pytest.raises(ConfigError, match="unknown keyword"):
        espdl_quantize_onnx(*args, error_report=False, fancy_option=1)
    with pytest.raises(ConfigError, match="esp32p4"):
        espdl_quantize_onnx(*args, target="esp31", error_report=False)
    with pytest.raises(ConfigError, match="bits must be 8 or 16"):
        espdl_quantize_onnx(*args, num_of_bits=4, error_report=False)
    with pytest.raises(ConfigError, match="calib_steps"):
        espdl_quantize_onnx(str(src), str(tmp_path / "o.espdl"), calib, 0, [1, 3, 6, 6], error_report=False)
    with pytest.raises(InputDataError, match="calib_dataloader"):
        espdl_quantize_onnx(str(src), str(tmp_path / "o.espdl"), None, 1, [1, 3, 6, 6], error_report=False)
    with pytest.raises(ModelLoadError, match="does not exist"):
        espdl_quantize_onnx(
            str(tmp_path / "missing.onnx"),
            str(tmp_path / "o.espdl"),
            calib,
            1,
            [1, 3, 6, 6],
            error_report=False,
        )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot write"):
        espdl_quantize_onnx(
            str(src), str(blocker / "sub" / "o.espdl"), calib, 1, [1, 3, 6, 6], error_report=False
        )
    with pytest.raises(ConfigError, match="streaming"):
        espdl_quantize_onnx(*args, error_report=False, auto_streaming=True)


def test_platforms_and_settings():
    assert get_target_platform("esp32p4", 8) is TargetPlatform.ESPDL_INT8
    assert get_target_platform("esp32s3", 16) is TargetPlatform.ESPDL_S3_INT16
    assert get_target_platform("esp32c3", 16, hi_precision=True) is TargetPlatform.ESPDL_C_H_PRE_INT16
    assert int(get_target_platform("c", 8)) == 557
    with pytest.raises(ConfigError):
        get_target_platform("esp32p4", 4)
    s = QuantizationSettingFactory.espdl_setting()
    s.dispatching_table.append("conv", TargetPlatform.ESPDL_INT16)
    s.equalization = True
    s.quantize_activation_setting.calib_algorithm = "percentile"
    again = QuantizationSetting.from_json(s.to_json())
    assert again.to_json() == s.to_json()
    assert again.dispatching_table.precision() == {"conv": 16}
    with pytest.raises(AttributeError):
        s.not_a_setting = 1  # type: ignore[attr-defined]
