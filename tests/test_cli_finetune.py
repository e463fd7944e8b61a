"""``espq quantize --tqt`` / ``--reconstruct``: per-block progress lines, an export that checks out."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from espq.cli import app
from espq.frontends import export_torch

runner = CliRunner()
LINE = re.compile(
    r"^(TQT|reconstruction) block (\d+)/(\d+) \[[^\]]+\]: mse (\S+) -> (\S+) \((kept|rolled back)\)$"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_ft")
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 6 * 6, 4),
    )
    onnx_path = d / "tiny.onnx"
    onnx_path.write_bytes(export_torch(m, input_shape=[1, 3, 6, 6]).SerializeToString())
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((16, 3, 6, 6)).astype(np.float32))
    return d, onnx_path, calib


@pytest.mark.parametrize("flags", [["--tqt", "--tqt-steps", "4", "--tqt-block", "2"], ["--reconstruct",
                                    "--reconstruct-steps", "4"]])  # fmt: skip
def test_finetune_flags_print_block_losses_and_export_checks(files, flags):
    d, onnx_path, calib = files
    out = d / f"tiny{flags[0]}.espdl"
    args = [
        "quantize",
        onnx_path,
        "--calib",
        calib,
        "--target",
        "esp32s3",
        "--steps",
        "2",
        "--batch-size",
        "8",
    ]
    r = runner.invoke(app, [str(a) for a in [*args, *flags, "--out", out]])
    assert r.exit_code == 0, r.output
    lines = [m for m in (LINE.match(ln) for ln in r.output.splitlines()) if m]
    blocks = 2 if flags[0] == "--tqt" else 1  # 3 computing ops: blocks of 2 (--tqt-block 2) or of 4
    assert lines and all(int(m.group(3)) == blocks for m in lines)
    for m in lines:
        before, after = float(m.group(4)), float(m.group(5))
        assert (after < before) == (m.group(6) == "kept")
    r = runner.invoke(app, ["run", str(out), "--check"])
    assert r.exit_code == 0, r.output


def test_bad_finetune_values_are_one_line_errors(files):
    d, onnx_path, calib = files
    r = runner.invoke(
        app,
        [
            "quantize",
            str(onnx_path),
            "--calib",
            str(calib),
            "--tqt",
            "--tqt-block",
            "0",
            "--out",
            str(d / "x.espdl"),
        ],
    )
    assert r.exit_code == 2 and "block_size >= 1" in r.output and "Traceback" not in r.output
    assert not (d / "x.espdl").exists()
