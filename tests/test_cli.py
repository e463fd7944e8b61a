"""The espq CLI, through typer's runner: every command, exit codes, messages without tracebacks."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from espq.cli import app
from espq.frontends import export_torch

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 4),
    )
    onnx_path = d / "tiny.onnx"
    onnx_path.write_bytes(export_torch(m, input_shape=[1, 3, 8, 8]).SerializeToString())
    calib = d / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    return d, onnx_path, calib


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_quantize_inspect_run_diff(files):
    d, onnx_path, calib = files
    out = d / "tiny.espdl"
    r = invoke(
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
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    assert out.exists() and out.with_suffix(".info").exists() and out.with_suffix(".json").exists()
    r = invoke("inspect", out, "--json")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["target"] == "esp32s3" and info["has_test_values"] is True
    assert {n["op_type"] for n in info["nodes"]} >= {"Conv", "MaxPool", "Gemm"}
    r = invoke("run", out, "--check")
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    x = d / "x.npy"
    np.save(x, np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32))
    r = invoke("run", out, "--input", x, "--output", d / "y.npz")
    assert r.exit_code == 0, r.output
    with np.load(d / "y.npz") as z:
        assert list(z.values())[0].shape == (1, 4)
    assert invoke("diff", out, out).exit_code == 0
    out16 = d / "tiny16.espdl"
    assert (
        invoke(
            "quantize", onnx_path, "--calib", calib, "--bits", "16", "--steps", "2", "--out", out16
        ).exit_code
        == 0
    )
    r = invoke("diff", out, out16)
    assert r.exit_code == 1 and r.output.strip()


def test_check_and_analyse(files):
    d, onnx_path, calib = files
    r = invoke("check", onnx_path, "--target", "c")
    assert r.exit_code == 0, r.output
    html = d / "report.html"
    r = invoke(
        "analyse",
        onnx_path,
        "--calib",
        calib,
        "--batch-size",
        "4",
        "--steps",
        "2",
        "--html",
        html,
        "--json",
        d / "report.json",
    )
    assert r.exit_code == 0, r.output
    assert "NOISE:SIGNAL POWER RATIO" in r.output
    assert html.read_text().lstrip().lower().startswith("<!doctype html")
    report = json.loads((d / "report.json").read_text())
    assert report["format"] == "espq-analysis/1"
    assert [op["name"] for op in report["ops"]] == ["/0/Conv", "/4/Gemm"]
    for op in report["ops"]:
        for kind in ("graphwise", "layerwise", "isolated"):
            assert 0.0 <= op[kind]["snr"] < 0.05


@pytest.mark.parametrize(
    "args, message",
    [
        (["quantize", "{onnx}", "--calib", "{d}/missing.npy"], "does not exist"),
        (["quantize", "{onnx}", "--calib", "{calib}", "--target", "esp99"], "esp32p4"),
        (["quantize", "{onnx}", "--calib", "{calib}", "--bits", "4"], "8 or 16"),
        (["quantize", "{d}/nope.onnx", "--calib", "{calib}"], "does not exist"),
        (
            ["quantize", "{onnx}", "--calib", "{calib}", "--steps", "1", "--out", "{calib}/sub/x.espdl"],
            "cannot write",
        ),
        (["run", "{onnx}", "--check"], "EDL"),
        (["inspect", "{d}/none.espdl"], ""),
    ],
)
def test_bad_input_exit_2_without_traceback(files, args, message):
    d, onnx_path, calib = files
    r = invoke(*[a.format(onnx=onnx_path, calib=calib, d=d) for a in args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert message in r.output


def test_help_shows_examples():
    for cmd in ("quantize", "check", "inspect", "diff", "run", "analyse", "demo"):
        r = invoke(cmd, "--help")
        assert r.exit_code == 0
        assert "Example" in r.output, cmd


@pytest.mark.slow
def test_demo_int8_within_2_points_of_float(tmp_path):
    r = invoke("demo", "--out", tmp_path / "demo")
    assert r.exit_code == 0, r.output
    lines = re.findall(
        r"(esp32\w+): float ([\d.]+) % \| int8 fake-quant ([\d.]+) % \| int8 on the exported file "
        r"\(integer runner\) ([\d.]+) %",
        r.output,
    )
    assert {t for t, *_ in lines} == {"esp32p4", "esp32s3"}
    for _, f, fq, integer in lines:
        assert float(fq) >= float(f) - 2.0
        assert float(integer) >= float(f) - 2.0
    for name in (
        "digits_esp32p4.espdl",
        "digits_esp32s3.info",
        "digits_esp32p4.json",
        "digits_esp32s3_report.html",
    ):
        assert (tmp_path / "demo" / name).exists()


def test_quantize_auto_int16_and_best_recipe(files):
    d, onnx_path, calib = files
    out = d / "amp.espdl"
    r = invoke(
        "quantize",
        onnx_path,
        "--calib",
        calib,
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--auto-int16",
        "1e-6",
        "--out",
        out,
    )
    assert r.exit_code == 0, r.output
    from espq.espdl import read

    types = {n.name: n.attr("quant_type") for n in read(out).graph.nodes}
    assert "S16" in types.values()  # an unreachable error target promotes layers
    out2 = d / "best.espdl"
    r = invoke("quantize", onnx_path, "--calib", calib, "--steps", "2", "--recipe", "best", "--out", out2)
    assert r.exit_code == 0, r.output
    assert out2.exists()
