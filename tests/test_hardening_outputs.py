"""Issue 14 findings 10 and 11: output file modes, the output set written together, option checks,
escaped node names, image channels."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.errors import ConfigError
from espq.quant.model import QuantizedModel
from espq.utils import atomic_write_set, atomic_write_text


@pytest.fixture(scope="module")
def qm() -> QuantizedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    return espq.quantize(net.eval(), data, target="esp32p4", input_shape=[1, 3, 6, 6], progress=False)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test; the old one is restored afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- finding 11a: modes follow the umask (were 0600 from mkstemp) ------------------------------------


def test_atomic_write_honours_umask(tmp_path: Path, umask) -> None:
    umask(0o022)
    atomic_write_text(tmp_path / "a.txt", "x")
    umask(0o027)
    atomic_write_text(tmp_path / "b.txt", "x")
    umask(0o022)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.txt") == 0o640
    assert os.umask(0o022) == 0o022  # the umask itself is left as it was


def test_export_files_0644_key_files_0600(qm: QuantizedModel, tmp_path: Path, umask) -> None:
    umask(0o022)
    out = tmp_path / "m.espdl"
    qm.export(out)
    assert {p.name: _mode(p) for p in sorted(tmp_path.iterdir())} == {
        "m.espdl": 0o644,
        "m.info": 0o644,
        "m.json": 0o644,
    }
    pytest.importorskip("cryptography")
    qm.export(tmp_path / "e.espdl", key="auto")
    assert _mode(tmp_path / "e.espdl") == 0o644
    assert _mode(tmp_path / "e.key") == 0o600
    assert _mode(tmp_path / "e_key.h") == 0o600


# --- finding 10: the output set is written together ---------------------------------------------------


def _fail_rename_of(monkeypatch, suffix: str) -> None:
    """Make the rename of the file ending in ``suffix`` fail as a full disk would."""
    real = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).endswith(suffix):
            raise OSError(28, "No space left on device")
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", replace)


def test_failed_side_file_keeps_older_set(qm: QuantizedModel, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "m.espdl"
    qm.export(out, metadata_props={"run": "old"})
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(old) == ["m.espdl", "m.info", "m.json"]
    _fail_rename_of(monkeypatch, ".json")
    with pytest.raises(ConfigError, match=r"cannot write '.*m\.json': No space left"):
        qm.export(out, metadata_props={"run": "new"}, export_test_values=True)
    monkeypatch.undo()
    # the .espdl and .info were renamed before the .json failed: both are back to the old bytes
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_failed_html_leaves_no_new_files(qm: QuantizedModel, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(ConfigError, match="cannot write .*report.html"):
        qm.export(tmp_path / "m.espdl", extra_files={blocker / "report.html": "<html></html>"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_extra_files_and_key_files_in_one_set(qm: QuantizedModel, tmp_path: Path, umask) -> None:
    pytest.importorskip("cryptography")
    umask(0o022)
    qm.export(tmp_path / "m.espdl", key="auto", extra_files={tmp_path / "r.html": "<html>r</html>"})
    modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    assert modes == {
        "m.espdl": 0o644,
        "m.info": 0o644,
        "m.json": 0o644,
        "r.html": 0o644,
        "m.key": 0o600,
        "m_key.h": 0o600,
    }
    assert (tmp_path / "r.html").read_text() == "<html>r</html>"
    assert len(bytes.fromhex((tmp_path / "m.key").read_text().strip())) == 16


def test_sets_commit_one_after_the_other(tmp_path: Path) -> None:
    """A set waits for the folder lock another writer holds (two runs to one --out mixed files)."""
    from espq.utils import _folder_locks

    files = {tmp_path / "a.espdl": b"EDL2", tmp_path / "a.json": "{}"}
    with _folder_locks([tmp_path]):
        t = threading.Thread(target=atomic_write_set, args=(files,))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not (tmp_path / "a.espdl").exists()
    t.join(5)
    assert not t.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.espdl", "a.json"]


def test_cli_failed_report_html_leaves_no_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from espq.cli import app
    from espq.frontends import export_torch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    onnx_path = tmp_path / "good.onnx"
    onnx_path.write_bytes(export_torch(net, input_shape=[1, 3, 8, 8]).SerializeToString())
    calib = tmp_path / "c.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32))
    (tmp_path / "blocker").write_text("x")
    args = ["quantize", onnx_path, "--calib", calib, "--steps", "1", "--batch-size", "4", "--no-test-values"]
    args += ["--out", tmp_path / "m.espdl", "--report-html", tmp_path / "blocker" / "r.html"]
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 2, r.output
    assert "cannot write" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker", "c.npy", "good.onnx"]
    # the same command with a writable --report-html writes the whole set, the HTML included
    args[-1] = tmp_path / "r.html"
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert all((tmp_path / n).is_file() for n in ("m.espdl", "m.info", "m.json"))


# --- finding 11b: option checks, node-name diffs, escaped names ---------------------------------------


def _cli(*args) -> object:
    from typer.testing import CliRunner

    from espq.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_auto_int16_must_be_finite_non_negative(tmp_path: Path, value: str) -> None:
    calib = tmp_path / "c.npy"
    np.save(calib, np.zeros((4, 3, 8, 8), np.float32))
    r = _cli(
        "quantize",
        tmp_path / "m.onnx",
        "--calib",
        calib,
        "--auto-int16",
        value,
        "--out",
        tmp_path / "o.espdl",
    )
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "--auto-int16" in lines[0] and "finite number >= 0" in lines[0], r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy"]


def _renamed_copy(src: Path, dst: Path, index: int, name: str) -> None:
    from espq import espdl

    m = espdl.read(src)
    m.graph.nodes[index].name = name
    espdl.write(m, dst)


def test_diff_reports_node_name_change(qm: QuantizedModel, tmp_path: Path) -> None:
    from espq import espdl

    a, b = tmp_path / "a.espdl", tmp_path / "b.espdl"
    qm.export(a, export_config=False)
    _renamed_copy(a, b, 0, "renamed_conv")
    old = espdl.read(a).graph.nodes[0].name
    r = _cli("diff", a, b)
    assert r.exit_code == 1, r.output
    assert f"node 0 '{old}' / B node 0 'renamed_conv': name '{old}' != 'renamed_conv'" in r.output


def test_escape_codes_in_names_printed_escaped(qm: QuantizedModel, tmp_path: Path) -> None:
    a, b = tmp_path / "a.espdl", tmp_path / "b.espdl"
    qm.export(a, export_config=False)
    _renamed_copy(a, b, 1, "\x1b[2J\x1b[31mEVIL\n")
    r = _cli("inspect", b)
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output
    assert "\\x1b[2J\\x1b[31mEVIL\\n" in r.output
    r = _cli("diff", a, b)
    assert r.exit_code == 1, r.output
    assert "\x1b" not in r.output and "\\x1b[2J\\x1b[31mEVIL\\n" in r.output
    r = _cli("inspect", b, "--json")  # JSON escapes control characters itself
    assert r.exit_code == 0 and "\x1b" not in r.output and "\\u001b[2J" in r.output


# --- finding 11: image folders follow the model's channel count ---------------------------------------


def _image_folder(folder: Path, n: int = 4) -> Path:
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    return folder


def _gray_onnx(path: Path) -> Path:
    from espq.frontends import export_torch

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    path.write_bytes(export_torch(net, input_shape=[1, 1, 8, 8]).SerializeToString())
    return path


def test_grayscale_images_for_one_channel_input(tmp_path: Path) -> None:
    from PIL import Image

    from espq.data import load_calibration, model_image_channels

    folder = _image_folder(tmp_path / "imgs")
    onnx_path = _gray_onnx(tmp_path / "gray.onnx")
    assert model_image_channels(onnx_path) == 1
    assert model_image_channels(onnx_path, [1, 3, 8, 8]) == 3  # --input-shape wins
    assert model_image_channels(onnx_path, [[1, 8, 8, 1]]) == 3  # NHWC-looking shapes keep RGB
    (batch,) = load_calibration(folder, batch_size=8, size=[8, 8], channels=1)
    assert batch.shape == (4, 1, 8, 8)
    gray = np.asarray(Image.open(folder / "0.png").convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(batch[0, 0], gray, rtol=0, atol=1e-7)
    (rgb,) = load_calibration(folder, batch_size=8, size=[8, 8])
    assert rgb.shape == (4, 3, 8, 8)


def test_cli_calibrates_one_channel_model_from_images(tmp_path: Path) -> None:
    folder = _image_folder(tmp_path / "imgs")
    onnx_path = _gray_onnx(tmp_path / "gray.onnx")
    out = tmp_path / "g.espdl"
    base = ["quantize", onnx_path, "--calib", folder, "--size", "8", "8", "--steps", "1", "--out", out]
    r = _cli(*base)
    assert r.exit_code == 0, r.output
    assert out.is_file()
    r = _cli(*base[:-2], "--out", tmp_path / "h.espdl", "--mean", "0.5", "0.5")
    assert r.exit_code == 2, r.output
    assert "--mean has 2 values but the model input has 1 channel(s)" in r.output
