"""ESP-PPQ 1.3.12's settings: every field exists with its default; each works or fails with one ConfigError.

``data/esp_ppq_1_3_12_settings.json`` lists every field of ESP-PPQ 1.3.12's ``QuantizationSetting`` (and its
sub-settings) with the default of ``QuantizationSetting()`` and the values ``espdl_setting(8/16)`` change,
read from the esp-ppq 1.3.12 wheel.
"""

from __future__ import annotations

import copy
import json
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from graph_builders import make_model
from onnx import helper

import espq
from espq.api import QuantizationSetting, QuantizationSettingFactory, espdl_quantize_onnx
from espq.api.setting_support import FIELDS, FIXED, MISSING, PART, get_field
from espq.api.settings import QuantizationVisibility, UnknownSettingError
from espq.errors import ConfigError
from espq.espdl import read
from espq.sim.integer import run_espdl

WHEEL = json.loads((Path(__file__).parent / "data" / "esp_ppq_1_3_12_settings.json").read_text())["fields"]
ESPQ_ONLY = {"recipe", "layer_calib_algorithm"}
#: ESP-PPQ's table starts with placeholder names it ignores; espq starts empty (it rejects unknown names)
DIFFERENT_DEFAULT = {"dispatching_table.dispatchings"}


def _value(v: Any) -> Any:
    return f"{type(v).__name__}.{v.name}" if isinstance(v, Enum) else v


def _paths(obj: Any, prefix: str = "") -> dict[str, Any]:
    out = {}
    for name in obj.__dataclass_fields__:
        v = getattr(obj, name)
        if hasattr(v, "__dataclass_fields__"):
            out.update(_paths(v, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = _value(v)
    return out


def set_field(setting: QuantizationSetting, path: str, value: Any) -> None:
    *parents, name = path.split(".")
    obj = setting
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, name, value)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["y"], name="sig"),
    ]
    inits = {
        "w1": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b1": rng.standard_normal(4).astype(np.float32),
        "w2": rng.standard_normal((4, 4, 1, 1)).astype(np.float32),
        "b2": rng.standard_normal(4).astype(np.float32),
    }
    path = tmp_path_factory.mktemp("compat") / "m.onnx"
    onnx.save(make_model(nodes, [("x", [1, 3, 6, 6])], [("y", [1, 4, 6, 6])], inits), path)
    calib = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    return path, calib


def _quantize(model, setting, tmp_path, bits=8, skip_export=True):
    path, calib = model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quality-gate findings of the random model
        return espdl_quantize_onnx(
            str(path), str(tmp_path / "m.espdl"), calib, 2, [1, 3, 6, 6], target="esp32s3",
            num_of_bits=bits, setting=setting, error_report=False, skip_export=skip_export,
        )  # fmt: skip


#: a valid value other than the default, per field (ESP-PPQ's documented alternatives where it has them)
OTHER = {
    "dispatcher": "conservative",
    "quantize_activation_setting.calib_algorithm": "percentile",
    "quantize_activation_setting.calib_algorithm_per_layer": {"conv1": "minmax"},
    "quantize_parameter_setting.calib_algorithm": "percentile",
    "quantize_parameter_setting.calib_algorithm_per_layer": {"conv1": "minmax"},
    "quantize_parameter_setting.clip_visiblity": QuantizationVisibility.INTERNAL,
    "quantize_parameter_setting.pad_visiblity": QuantizationVisibility.FORCE_EXPORT,
    "quant_config_modify_setting.custom_config": {"conv1": 0.0625},
    "equalization_setting.interested_layers": ["conv1", "conv2"],
    "equalization_setting.opt_level": 2,
    "bias_correct_setting.interested_layers": ["conv2"],
    "weight_split_setting.method": "random",
    "fusion_setting.align_avgpooling_to": "Align to Output",
    "fusion_setting.align_elementwise_to": "Align to Large",
    "fusion_setting.align_concat_to": "Align to Large",
    "fusion_setting.align_resize_to": "None",
    "lut_optimization_setting.step": 64,
    "lut_optimization_setting.target_ops": ["Sigmoid"],
    "dispatching_table.dispatchings": {"sig": 554},  # ESPDL_S3_INT16
    "layer_calib_algorithm": {"c1": "minmax"},
    "recipe": "best",
}


def _other(path: str, default: Any) -> Any:
    if path in OTHER:
        return OTHER[path]
    if isinstance(default, bool):
        return not default
    if isinstance(default, (int, float)):
        return default + 1
    if isinstance(default, list):
        return ["conv1"]
    if isinstance(default, str):
        return "cpu" if path.endswith("collecting_device") else default + " (changed)"
    raise AssertionError(f"no test value for {path}")


def test_every_esp_ppq_field_exists_with_its_default():
    ours = _paths(QuantizationSetting())
    assert set(ours) == set(WHEEL) | ESPQ_ONLY
    assert len(WHEEL) == 104
    for path, entry in WHEEL.items():
        if path not in DIFFERENT_DEFAULT:
            assert ours[path] == entry["default"], path
    for bits in (8, 16):
        espdl = _paths(QuantizationSettingFactory.espdl_setting(bits))
        changed = {p: e[f"espdl{bits}"] for p, e in WHEEL.items() if f"espdl{bits}" in e}
        assert {p: espdl[p] for p in changed} == changed
        assert {p for p in WHEEL if espdl[p] != ours[p]} == set(changed)
    assert set(FIELDS) == set(ours)  # every field has a support entry (and the README row)


@pytest.mark.parametrize("path", sorted(WHEEL) + sorted(ESPQ_ONLY))
def test_every_field_works_or_fails_with_one_config_error(path, model, tmp_path):
    rule = FIELDS[path]
    setting = QuantizationSettingFactory.espdl_setting()
    if rule.switch:
        set_field(setting, rule.switch, True)
    for switch in ("tqt_optimization", "lsq_optimization", "blockwise_reconstruction"):
        if switch in (path, rule.switch):  # the default 500/5000 steps per block take minutes here
            get_field(setting, f"{switch}_setting").steps = 2
    value = _other(path, get_field(setting, path))
    set_field(setting, path, value)
    assert get_field(setting, path) == value
    failing = None if rule.works(value) else path
    if rule.switch and not FIELDS[rule.switch].works(True):
        failing = rule.switch  # a sub-setting of a feature espq lacks fails through its switch
    if failing is None:
        assert rule.status not in (FIXED, MISSING, PART) or callable(rule.accepted) or rule.switch, path
        qm = _quantize(model, setting, tmp_path)
        assert isinstance(qm, espq.QuantizedModel)
    else:
        with pytest.raises(ConfigError) as info:
            _quantize(model, setting, tmp_path)
        msg = str(info.value)
        assert msg.startswith("1 setting field(s) espq does not implement")
        assert f"espq does not implement {failing}=" in msg and "the nearest espq feature is" in msg


def test_switched_off_features_are_not_checked_and_errors_are_collected(model, tmp_path):
    s = QuantizationSettingFactory.espdl_setting()
    s.ssd_setting.iteration = 10  # the switch is off: ESP-PPQ does not read it either
    s.weight_split_setting.interested_layers = ["conv1"]
    s.check()
    s.ssd_equalization = True
    s.weight_split = True
    s.quantize_activation_setting.calib_algorithm_per_layer = {"conv1": "mse"}
    with pytest.raises(ConfigError) as info:
        _quantize(model, s, tmp_path)
    lines = [ln for ln in str(info.value).splitlines() if ln.startswith("  - ")]
    assert [ln.split("=")[0] for ln in lines] == [
        "  - espq does not implement ssd_equalization",
        "  - espq does not implement weight_split",
        "  - espq does not implement quantize_activation_setting.calib_algorithm_per_layer",
    ]
    # ESP-PPQ's generic default (not espdl_setting) differs in five ESP-DL fields: one error, with the hint
    with pytest.raises(
        ConfigError, match=r"(?s)5 setting field.*dispatcher='conservative'.*espdl_setting\(\)"
    ):
        _quantize(model, QuantizationSettingFactory.default_setting(), tmp_path)


def test_typos_fail_with_did_you_mean():
    s = QuantizationSettingFactory.espdl_setting()
    with pytest.raises(UnknownSettingError, match="did you mean 'equalization'"):
        s.equalisation = True  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        s.bias_correct_setting.step = 3  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="did you mean 'lut_optimization'"):
        s.lut_optimisation  # type: ignore[attr-defined]  # noqa: B018
    assert not hasattr(s, "no_such_field") and copy.deepcopy(s) == s


def test_lut_optimization_reaches_the_exporter(model, tmp_path):
    """lut_optimization/step reach the exporter's int16 LUT: step 64 -> 65536/64+1 entries; off -> Sigmoid."""
    s = QuantizationSettingFactory.espdl_setting(16)
    s.lut_optimization_setting.step = 64
    qm = _quantize(model, s, tmp_path, bits=16, skip_export=False)
    assert qm.int16_lut_step == 64  # the simulator (TorchExecutor, qm.run) uses the exported step
    x = model[1][0][:1]
    lsb = 2.0 ** qm.plan.tensors["y"].exponent
    chip = run_espdl(tmp_path / "m.espdl", x, target="esp32s3")["y"]
    assert np.abs(qm.run(x)["y"] - chip).max() <= lsb  # int16: within 1 LSB of the integer runner
    m = read(tmp_path / "m.espdl")
    lut = next(n for n in m.graph.nodes if n.op_type == "LUT")
    assert (
        lut.attributes["int16_lut_step"] == 64 and m.graph.initializers[lut.attributes["lut"]].numel == 1025
    )
    s.lut_optimization = False
    (tmp_path / "off").mkdir()
    _quantize(model, s, tmp_path / "off", bits=16, skip_export=False)
    ops = [n.op_type for n in read(tmp_path / "off" / "m.espdl").graph.nodes]
    assert "LUT" not in ops and "Sigmoid" in ops
    s.lut_optimization, s.lut_optimization_setting.step = True, 24
    with pytest.raises(ConfigError, match="lut_optimization_setting.step=24"):
        _quantize(model, s, tmp_path)


def test_json_round_trip_and_errors():
    s = QuantizationSettingFactory.espdl_setting(16)
    s.dispatching_table.append("conv1", 554)
    s.bias_correct = True
    again = QuantizationSetting.from_json(s.to_json())
    assert (
        again == s
        and again.quantize_parameter_setting.clip_visiblity is QuantizationVisibility.EXPORT_WHEN_ACTIVE
    )
    with pytest.raises(ConfigError, match="did you mean 'equalization'"):
        QuantizationSetting.from_json({"equalisation": True})
    with pytest.raises(ConfigError, match="clip_visiblity.*EXPORT_WHEN_ACTIVE"):
        QuantizationSetting.from_json({"quantize_parameter_setting": {"clip_visiblity": "SOMETIMES"}})


def test_reads_esp_ppq_json():
    """ESP-PPQ 1.3.12's own to_json() (from the wheel) of espdl_setting(16), equalization, one dispatching."""
    text = (Path(__file__).parent / "data" / "esp_ppq_1_3_12_espdl16_setting.json").read_text()
    s = QuantizationSetting.from_json(text)
    expected = QuantizationSettingFactory.espdl_setting(16)
    expected.dispatching_table.append("conv1", 554)
    expected.equalization, expected.equalization_setting.iterations = True, 4
    assert s == expected and s.dispatching_table.precision() == {"conv1": 16}


def test_observer_names_are_case_insensitive_as_in_esp_ppq(model, tmp_path):
    plans = []
    for name in ("MSE", "mse"):
        s = QuantizationSettingFactory.espdl_setting()
        s.quantize_activation_setting.calib_algorithm = name
        plans.append(_quantize(model, s, tmp_path).plan.to_json())
    s.quantize_activation_setting.calib_algorithm = "minmax"
    assert plans[0] == plans[1] != _quantize(model, s, tmp_path).plan.to_json()
