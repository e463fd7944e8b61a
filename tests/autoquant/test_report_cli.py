"""AutoQuant's HTML report, the chosen model's export and ``espq autoquant``."""

from __future__ import annotations

import json

import numpy as np
import onnx
from aqhelpers import batches, chain_model
from typer.testing import CliRunner

import espq
from espq.autoquant.space import Config
from espq.cli import app

SPACE = [Config("kl"), Config("minmax"), Config("kl", int16_layers=2), Config("mse", (2, 10, 0.5))]


def test_report_and_files_are_reproducible(tmp_path):
    run = tmp_path / "run"
    kw = dict(space=SPACE, max_evaluations=3, run_dir=run)
    r = espq.autoquant(chain_model(), batches(), "esp32s3", **kw)
    page = (run / "report.html").read_text()
    assert f"Chosen: <b>{r.best['label']}</b>" in page and "<svg" in page
    for rec in r.candidates:
        assert f"<td>{rec['label']}</td><td>{rec['score']:.4g}</td>" in page
    assert page.count("<circle") == 3  # one dot per finalist
    files = {p: (run / p).read_bytes() for p in ("report.html", "summary.json", "candidates.json")}
    espq.autoquant(chain_model(), batches(), "esp32s3", **kw)  # the same search again, from scratch
    assert {p: (run / p).read_bytes() for p in files} == files
    written = r.export(tmp_path / "best.espdl")
    assert {p.name for p in tmp_path.iterdir()} >= {"best.espdl", "best.info", "best.json"}
    chosen = run / f"{r.best['index']:04d}" / "model.espdl"
    assert (tmp_path / "best.espdl").read_bytes() == chosen.read_bytes()
    x = np.concatenate(batches())[:1]
    out = espq.run_espdl(tmp_path / "best.espdl", x)
    np.testing.assert_array_equal(next(iter(out.values())), next(iter(r.model.run(x).values())))
    assert written is not None


def test_cli_autoquant(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(chain_model(), model)
    np.save(tmp_path / "calib.npy", np.concatenate(batches()))
    args = ["autoquant", str(model), "--calib", str(tmp_path / "calib.npy"), "--target", "esp32s3"]
    args += ["--batch-size", "4", "--max-evaluations", "2", "--run-dir", str(tmp_path / "run")]
    args += ["--out", str(tmp_path / "chosen.espdl"), "--max-size-bytes", "2000"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "chosen:" in res.output and (tmp_path / "chosen.json").is_file()
    best = json.loads((tmp_path / "run" / "candidates.json").read_text())[0]
    assert best["param_bytes"] <= 2000 and f"{best['label']} (output NSR {best['nsr']:.3e}" in res.output
    (tmp_path / "mine.espdl").write_bytes(b"not espq's")  # a file espq did not write: refused before any run
    args[args.index("--out") + 1] = str(tmp_path / "mine.espdl")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert (tmp_path / "mine.espdl").read_bytes() == b"not espq's"
