"""Hostile `.espdl` files and inputs: absurd exponents, devices/FIFOs/oversized files rejected on load,
NaN inputs rejected by name."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import espq
from espq.errors import CalibrationError, EspdlFormatError, InputDataError
from espq.espdl import max_espdl_bytes, read, write
from espq.espdl.inspect import inspect_cli
from espq.espdl.validate import violations
from espq.frontends import export_torch
from espq.sim.integer.cli import run_cli
from espq.sim.integer.runner import run_espdl


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("hard")
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    onnx_path = d / "tiny.onnx"
    onnx_path.write_bytes(export_torch(m, input_shape=[1, 3, 8, 8]).SerializeToString())
    x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    out = d / "tiny.espdl"
    espq.quantize(str(onnx_path), [x], target="esp32s3", calib_steps=1).export(out, export_test_values=True)
    return d, out


def _edited(exported, name: str, edit) -> str:
    d, out = exported
    model = read(out)
    edit(model)
    path = d / f"{name}.espdl"
    write(model, path)
    return str(path)


def _set_input_exponent(model) -> None:
    model.graph.inputs[0].exponents = [10**15]


def _set_weight_exponent(model) -> None:
    weight = next(t for t in model.graph.initializers.values() if t.numel > 4)
    weight.exponents = [8_400_000_000_000_000_000]


@pytest.mark.parametrize(
    ("edit", "shown"),
    [
        (_set_input_exponent, "exponent 1000000000000000"),
        (_set_weight_exponent, "exponent 8400000000000000000"),
    ],
)
def test_absurd_exponent_rejected_on_load(exported, capsys, edit, shown):
    path = _edited(exported, edit.__name__, edit)
    with pytest.raises(EspdlFormatError, match=f"{shown}, outside \\[-64, 64\\]"):
        read(path)
    assert inspect_cli(path) == 2
    assert run_cli(path, [], None, None, True) == 2
    err = capsys.readouterr().err
    assert err.count(shown) == 2 and "Traceback" not in err


def test_exponent_at_limit_still_loads(exported):
    path = _edited(exported, "limit", lambda m: setattr(m.graph.inputs[0], "exponents", [-64]))
    assert read(path).graph.inputs[0].exponents == [-64]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_rejected_by_name(exported, bad):
    _, out = exported
    x = np.zeros((1, 3, 8, 8), np.float32)
    x[0, 1, 2, 3] = bad
    name = read(out).graph.inputs[0].name
    with pytest.raises(InputDataError, match=f"input '{name}' holds 1 NaN/Inf value"):
        run_espdl(out, x)
    assert run_espdl(out, np.zeros((1, 3, 8, 8), np.float32))  # finite values still run


@pytest.mark.parametrize("kind", ["device", "fifo", "folder"])
def test_non_regular_file_refused_without_reading(tmp_path, capsys, kind):
    path = {"device": "/dev/zero", "folder": str(tmp_path)}.get(kind)
    if kind == "fifo":
        path = str(tmp_path / "pipe.espdl")
        os.mkfifo(path)  # opening it would block until a writer appears
    with pytest.raises(EspdlFormatError, match="is not a regular file"):
        read(path)
    assert inspect_cli(path) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_file_over_size_limit_refused(exported, monkeypatch):
    _, out = exported
    size = out.stat().st_size
    monkeypatch.setenv("ESPQ_MAX_ESPDL_BYTES", str(size - 1))
    with pytest.raises(EspdlFormatError, match=f"larger than {size - 1} bytes.*ESPQ_MAX_ESPDL_BYTES"):
        read(out)
    monkeypatch.setenv("ESPQ_MAX_ESPDL_BYTES", str(size))
    assert read(out).graph.inputs
    monkeypatch.setenv("ESPQ_MAX_ESPDL_BYTES", "lots")
    with pytest.raises(EspdlFormatError, match="must be a positive number of bytes"):
        read(out)
    monkeypatch.delenv("ESPQ_MAX_ESPDL_BYTES")
    assert max_espdl_bytes() == 2 << 30


@pytest.mark.parametrize("edit", [_set_input_exponent, _set_weight_exponent])
def test_validator_reports_absurd_exponent_in_memory(exported, edit):
    model = read(exported[1])
    assert violations(model) == []
    edit(model)
    found = [m for m in violations(model) if "outside [-64, 64]" in m]
    assert len(found) >= 1 and ("exponent 1000000000000000" in found[0] or "8400000000000000000" in found[0])


def test_calibration_data_times_1e30_fails_calibration_naming_the_input(exported, tmp_path):
    """Refused at calibration since issue 14 finding 2 (it was refused at export by the validator)."""
    onnx_path = exported[0] / "tiny.onnx"
    x = (np.random.default_rng(0).standard_normal((4, 3, 8, 8)) * 1e30).astype(np.float32)
    with pytest.raises(CalibrationError) as info:
        espq.quantize(str(onnx_path), [x], target="esp32p4", calib_steps=1)
    msg = str(info.value)
    assert "input 'input' needs exponent 95 at int8" in msg and "outside ESP-DL's [-64, 64]" in msg, msg
