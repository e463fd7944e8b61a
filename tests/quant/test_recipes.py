"""Recipes: resolution against setting overrides, and the end-to-end effect of "best"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qhelpers import conv_relu_add_model, random_batches

import espq
from espq.errors import ConfigError
from espq.quant.equalization import EqualizationSetting
from espq.quant.recipes import resolve


def test_espdl_recipe_is_esp_ppq_default():
    steps = resolve(espq.QuantSetting())
    assert (steps.recipe, steps.equalization, steps.exponent_search, steps.bias_correction) == (
        "espdl",
        None,
        False,
        False,
    )


def test_best_recipe_turns_everything_on_and_fields_override():
    steps = resolve(espq.QuantSetting(), "best")
    assert steps.exponent_search and steps.bias_correction
    assert (steps.equalization.opt_level, steps.equalization.iterations) == (2, 10)
    s = espq.QuantSetting(
        recipe="best", bias_correction=False, equalization_setting=EqualizationSetting(iterations=3)
    )
    steps = resolve(s)
    assert not steps.bias_correction and steps.exponent_search
    assert (steps.equalization.opt_level, steps.equalization.iterations) == (1, 3)
    assert resolve(espq.QuantSetting(equalization=True)).equalization == EqualizationSetting()


def test_unknown_recipe_and_json_roundtrip():
    with pytest.raises(ConfigError, match="recipe"):
        resolve(espq.QuantSetting(), "fastest")
    with pytest.raises(ConfigError, match="recipe"):
        espq.QuantSetting(recipe="fastest").validate()
    s = espq.QuantSetting(recipe="best", equalization_setting=EqualizationSetting(opt_level=2, iterations=4))
    back = espq.QuantSetting.from_json(s.to_json())
    assert back == s and isinstance(back.equalization_setting, EqualizationSetting)


def test_quantize_recipe_argument_overrides_setting():
    model = conv_relu_add_model()
    data = random_batches([1, 3, 8, 8], n=2, batch=4)
    x = data[0]
    reference = espq.run_float(espq.load(model), x)["y"]
    qm = espq.quantize(
        model, data, recipe="best", setting=espq.QuantSetting(bias_correction=False), progress=False
    )
    # equalization keeps the float function; without bias correction the float graph is unchanged
    np.testing.assert_allclose(qm.run_float(x)["y"], reference, rtol=1e-4, atol=1e-5)


def _cifar(root: Path, n: int) -> np.ndarray:
    files = sorted(root.glob("*/*.jpg"))
    files = files[:: max(1, len(files) // n)][:n]  # spread over the classes
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    imgs = [(np.asarray(Image.open(f).convert("RGB"), np.float32) / 255 - mean) / std for f in files]
    return np.stack(imgs).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.slow
def test_best_recipe_lowers_resnet20_output_noise(shared):
    model = shared("models", "cifar10_resnet20.onnx")
    calib = _cifar(shared("data", "cifar10", "calib"), 48)
    x = _cifar(shared("data", "cifar10", "val"), 50)
    graph = espq.load(model)
    out = graph.outputs[0]
    f = espq.run_float(graph, x)[out]
    nsr = {}
    for recipe in ("espdl", "best"):
        qm = espq.quantize(graph, [calib[:24], calib[24:]], target="esp32s3", recipe=recipe, progress=False)
        q = qm.run(x)[out]
        nsr[recipe] = float(((q - f) ** 2).sum() / (f**2).sum())
    assert nsr["best"] < 0.7 * nsr["espdl"], nsr


def test_esp_ppq_settings_object_maps_onto_the_recipe_fields():
    from espq.api.settings import QuantizationSettingFactory
    from espq.quant.recipes import settings_from_compat

    compat = QuantizationSettingFactory.espdl_setting()
    s = settings_from_compat(compat, espq.QuantSetting(recipe="best"))
    assert s.equalization is None and s.bias_correction is None  # ESP-PPQ's False defaults: recipe decides
    compat.equalization = True
    compat.equalization_setting.opt_level = 2
    compat.equalization_setting.iterations = 4
    compat.bias_correct = True
    s = settings_from_compat(compat, espq.QuantSetting())
    assert s.equalization and s.bias_correction
    assert (s.equalization_setting.opt_level, s.equalization_setting.iterations) == (2, 4)
    compat.equalization_setting.including_act = True
    with pytest.raises(ConfigError, match="including_act"):
        settings_from_compat(compat, espq.QuantSetting())


def test_best_tries_variants_and_keeps_the_closest_to_float():
    from espq.quant.recipes import output_error, variants

    best = resolve(espq.QuantSetting(), "best")
    tried = variants(best)
    assert [(v.equalization is not None, v.exponent_search, v.bias_correction) for v in tried] == [
        (True, True, True),
        (False, True, True),
        (False, False, False),
    ]
    assert variants(resolve(espq.QuantSetting())) == [resolve(espq.QuantSetting())]
    model = conv_relu_add_model()
    data = random_batches([1, 3, 8, 8], n=3, batch=8)
    graph = espq.load(model)
    feeds = {"x": np.concatenate(data)}
    reference = espq.run_float(graph, feeds)
    chosen = espq.quantize(model, data, target="esp32s3", recipe="best", progress=False)
    assert chosen.steps in tried
    errors = []
    for v in tried:
        s = espq.QuantSetting(
            equalization=v.equalization is not None,
            equalization_setting=v.equalization,
            exponent_search=v.exponent_search,
            bias_correction=v.bias_correction,
        )
        other = espq.quantize(model, data, target="esp32s3", setting=s, progress=False)
        errors.append(output_error(other.run(feeds), reference))
    chosen_error = output_error(chosen.run(feeds), reference)
    # the plain calibration (last) unless a variant is >= 10 % closer to float; then the closest one
    assert chosen_error == pytest.approx(min(errors) if min(errors) < 0.9 * errors[-1] else errors[-1])
