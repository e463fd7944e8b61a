"""Bad inputs (issue 14): espq never overwrites an input or a file it did not write; exit 2, one line."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from espq.api import espdl_quantize_onnx, espdl_quantize_torch
from espq.cli import app
from espq.errors import ConfigError
from espq.frontends import export_torch

runner = CliRunner()


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())


@pytest.fixture()
def files(tmp_path):
    onnx_path = tmp_path / "good.onnx"
    onnx_path.write_bytes(export_torch(_net(), input_shape=[1, 3, 8, 8]).SerializeToString())
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32))
    return tmp_path, onnx_path, calib


def _quantize(*args) -> object:
    base = ["quantize", "--steps", "1", "--batch-size", "4", "--no-test-values"]
    return runner.invoke(app, [str(a) for a in base + list(args)])


def _snapshot(*paths) -> dict:
    return {p: p.read_bytes() for p in paths}


@pytest.mark.parametrize("force", [False, True])
def test_quantize_out_is_input(files, force):
    d, onnx_path, calib = files
    before = _snapshot(onnx_path, calib)
    extra = ["--force"] if force else []
    for out in (onnx_path, calib):
        r = _quantize(onnx_path, "--calib", calib, "--out", out, *extra)
        assert r.exit_code == 2, r.output
        assert "is an input file" in r.output and "Traceback" not in r.output
    assert _snapshot(onnx_path, calib) == before


def test_quantize_report_html_is_input(files):
    d, onnx_path, calib = files
    before = _snapshot(onnx_path)
    r = _quantize(onnx_path, "--calib", calib, "--out", d / "m.espdl", "--report-html", onnx_path, "--force")
    assert r.exit_code == 2 and "is an input file" in r.output
    assert _snapshot(onnx_path) == before
    assert not (d / "m.espdl").exists()  # refused before anything was written


def test_quantize_side_file_lands_on_input(files):
    """A model named m.json with --out m.espdl: the .json side file would replace the model."""
    d, onnx_path, calib = files
    model = d / "m.json"
    model.write_bytes(onnx_path.read_bytes())
    before = _snapshot(model)
    r = _quantize(model, "--calib", calib, "--out", d / "m.espdl", "--force")
    assert r.exit_code == 2 and "'" + str(d / "m.json") + "' is an input file" in r.output
    assert _snapshot(model) == before


def test_quantize_existing_foreign_file_needs_force(files):
    d, onnx_path, calib = files
    other = d / "notes.info"
    other.write_text("my notes\n")
    r = _quantize(onnx_path, "--calib", calib, "--out", d / "notes.espdl")
    assert r.exit_code == 2 and "was not written by espq" in r.output and "--force" in r.output
    assert other.read_text() == "my notes\n"
    r = _quantize(onnx_path, "--calib", calib, "--out", d / "notes.espdl", "--force")
    assert r.exit_code == 0, r.output
    assert other.read_text().startswith("model properties:")
    # espq's own outputs are replaced without --force: a rerun gives the same bytes
    first = _snapshot(d / "notes.espdl", d / "notes.json")
    r = _quantize(onnx_path, "--calib", calib, "--out", d / "notes.espdl")
    assert r.exit_code == 0, r.output
    assert _snapshot(d / "notes.espdl", d / "notes.json") == first


def test_analyse_json_is_input(files):
    d, onnx_path, calib = files
    before = _snapshot(onnx_path)
    args = ["analyse", onnx_path, "--calib", calib, "--steps", "1", "--batch-size", "4", "--json", onnx_path]
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 2 and "is an input file" in r.output
    assert _snapshot(onnx_path) == before


def _batches():
    return [torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))]


def test_qm_export_over_foreign_file(files):
    import espq

    d, onnx_path, calib = files
    before = _snapshot(onnx_path)
    qm = espq.quantize(onnx_path, _batches(), calib_steps=1, progress=False)
    with pytest.raises(ConfigError, match="was not written by espq"):
        qm.export(onnx_path)
    qm.source_files = [onnx_path]
    with pytest.raises(ConfigError, match="is an input file"):
        qm.export(onnx_path, overwrite=True)
    assert _snapshot(onnx_path) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_espdl_quantize_onnx_onto_its_input(files, overwrite):
    d, onnx_path, calib = files
    before = _snapshot(onnx_path)
    with pytest.raises(ConfigError, match="is an input file"):
        espdl_quantize_onnx(
            onnx_path, onnx_path, _batches(), 1, [1, 3, 8, 8], error_report=False, overwrite=overwrite
        )
    assert _snapshot(onnx_path) == before


def test_espdl_quantize_torch_keeps_a_foreign_onnx(tmp_path):
    own = tmp_path / "own.onnx"
    own.write_bytes(b"user's own model")
    kw = dict(calib_steps=1, input_shape=[1, 3, 8, 8], error_report=False)
    # the .onnx is a by-product: a foreign one is kept with a warning, the .espdl is still written
    # (ESP-DL's sin example exports sin_model.onnx itself, then quantizes the torch model beside it)
    with pytest.warns(UserWarning, match="kept '.*own.onnx': it exists and espq did not write it"):
        espdl_quantize_torch(_net(), tmp_path / "own.espdl", _batches(), **kw)
    assert own.read_bytes() == b"user's own model"
    kept_run = (tmp_path / "own.espdl").read_bytes()
    espdl_quantize_torch(_net(), tmp_path / "own.espdl", _batches(), overwrite=True, **kw)
    assert own.read_bytes() != b"user's own model"
    assert (tmp_path / "own.espdl").read_bytes() == kept_run  # the kept .onnx changed nothing else
    first = _snapshot(own, tmp_path / "own.espdl")
    # the .onnx espq wrote is its own output: a rerun replaces it, same bytes
    espdl_quantize_torch(_net(), tmp_path / "own.espdl", _batches(), **kw)
    assert _snapshot(own, tmp_path / "own.espdl") == first


def test_diff_missing_file_one_line(tmp_path):
    r = runner.invoke(app, ["diff", str(tmp_path / "a.espdl"), str(tmp_path / "b.espdl")])
    assert r.exit_code == 2 and f"no such file: '{tmp_path / 'a.espdl'}'" in r.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("command", ["inspect", "diff"])
def test_inspect_diff_fifo_no_hang(tmp_path, command):
    """`mkfifo f.espdl; espq inspect f.espdl` blocked forever; now one line, exit 2 (in a subprocess)."""
    fifo = tmp_path / "f.espdl"
    os.mkfifo(fifo)
    args = {"inspect": ["inspect", fifo], "diff": ["diff", fifo, fifo]}[command]
    cmd = [sys.executable, "-m", "espq.cli", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)  # the import alone takes ~25 s here
    assert r.returncode == 2 and f"'{fifo}' is not a regular file" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _three_output_espdl(d):
    """An .espdl whose outputs are named 'allow_pickle', 'file' and '../../up' (np.savez's pitfalls)."""
    import onnx
    from onnx import TensorProto, helper

    import espq

    names = ["allow_pickle", "file", "../../up"]
    nodes = [helper.make_node("Relu", ["x"], [names[0]]), helper.make_node("Sigmoid", ["x"], [names[1]])]
    nodes.append(helper.make_node("Relu", [names[1]], [names[2]]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 2, 2]) for n in names],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = d / "three.onnx"
    onnx.save(model, path)
    data = [np.random.default_rng(0).standard_normal((4, 4, 2, 2)).astype(np.float32)]
    qm = espq.quantize(path, data, target="esp32p4", calib_steps=1, progress=False)
    qm.export(d / "three.espdl")
    x = d / "x.npy"
    np.save(x, np.linspace(-2, 2, 16, dtype=np.float32).reshape(1, 4, 2, 2))
    return d / "three.espdl", x


def test_run_output_npz_keeps_every_output(tmp_path):
    """`espq run --output`: 'allow_pickle' gave an empty .npz, 'file' a traceback, '../..' went in as is."""
    espdl, x = _three_output_espdl(tmp_path)
    out = tmp_path / "out.npz"
    r = runner.invoke(app, ["run", str(espdl), "--input", str(x), "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output and "(.npz appended)" not in r.output
    assert "output '../../up' stored as member '______up'" in r.output
    with np.load(out) as z:
        assert sorted(z.files) == ["______up", "allow_pickle", "file"]
        xs = np.linspace(-2, 2, 16, dtype=np.float32)
        relu = z["allow_pickle"].ravel()
        assert relu.shape == (16,) and np.all(relu[xs <= 0] == 0)
        assert np.abs(relu - np.maximum(xs, 0)).max() < 0.05
        sig = 1 / (1 + np.exp(-xs))
        assert np.abs(z["file"].ravel() - sig).max() < 0.02
        assert np.array_equal(z["______up"], z["file"])  # Relu of a positive tensor
    with zipfile.ZipFile(out) as zf:
        assert all("/" not in n and ".." not in n for n in zf.namelist())


def test_run_output_reports_the_real_path(tmp_path):
    espdl, x = _three_output_espdl(tmp_path)
    target = tmp_path / "f.espdl"
    r = runner.invoke(app, ["run", str(espdl), "--input", str(x), "--output", str(target)])
    assert r.exit_code == 0, r.output
    assert f"wrote {target}.npz (.npz appended)" in r.output
    assert not target.exists() and (tmp_path / "f.espdl.npz").is_file()
