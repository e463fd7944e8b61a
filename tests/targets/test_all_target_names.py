"""Every name the target registry accepts quantizes, exports and passes ``espq run --check``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import espq
from espq.errors import ValidationError
from espq.espdl import read
from espq.espdl.validate import validate, violations
from espq.frontends import export_torch
from espq.sim.integer.cli import run_cli
from espq.targets import TARGETS, get_target

ALL_NAMES = sorted({n for t in TARGETS.values() for n in (t.name, *t.aliases)})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    path = tmp_path_factory.mktemp("names") / "tiny.onnx"
    path.write_bytes(export_torch(m, input_shape=[1, 3, 8, 8]).SerializeToString())
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    return path, x


def test_registry_accepts_26_names():
    assert len(ALL_NAMES) == 26
    assert {"esp32", "esp32s2", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "c3"} <= set(ALL_NAMES)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_target_name_exports_and_checks(tiny, tmp_path, capsys, name):
    onnx_path, x = tiny
    target = get_target(name)
    out = tmp_path / f"{name}.espdl"
    espq.quantize(str(onnx_path), [x], target=name, calib_steps=1).export(out, export_test_values=True)
    assert read(out).target == target.metadata_name
    assert violations(read(out), name) == []
    assert run_cli(str(out), [], None, name, True) == 0, capsys.readouterr()
    assert run_cli(str(out), [], None, None, True) == 0, capsys.readouterr()


def test_other_family_still_rejected(tiny, tmp_path):
    onnx_path, x = tiny
    out = tmp_path / "c3.espdl"
    espq.quantize(str(onnx_path), [x], target="esp32c3", calib_steps=1).export(out)
    msgs = violations(read(out), "esp32p4")
    assert any("metadata target 'c' differs from the requested target 'esp32p4'" in m for m in msgs)
    with pytest.raises(ValidationError, match="re-export for that target"):
        validate(out, "esp32p4")
