"""HTML report: structure (always) and rendering in headless Chromium (when installed)."""

from __future__ import annotations

import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from ahelpers import make_model
from onnx import helper

import espq
from espq.analysis import analyse

CHROMIUM = Path("/usr/bin/chromium")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> (open: {self.stack[-3:]})"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["y"], name="sig"),
    ]
    inits = {
        "w1": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32),
    }
    model = make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], inits)
    calib = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32)]
    setting = espq.QuantSetting(precision={"conv2": 16})
    qm = espq.quantize(model, calib, target="esp32p4", setting=setting, progress=False)
    report = analyse(qm, calib, progress=False)
    path = tmp_path_factory.mktemp("html") / "report.html"
    report.to_html(path)
    return report, path


def test_html_structure(html_report):
    report, path = html_report
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    p = _Collect()
    p.feed(text)
    p.close()
    assert p.stack == [], f"unclosed tags {p.stack}"
    ids = {a.get("id") for _, a in p.tags if a.get("id")}
    assert {"summary", "model", "errors", "histograms", "precision"} <= ids
    imgs = [a["src"] for t, a in p.tags if t == "img"]
    # one chart with the three kinds, one histogram per analysed op
    assert len(imgs) == 1 + len(report.histograms) and len(report.histograms) == 2
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    # self-contained: nothing fetched from elsewhere
    assert not re.search(r'(src|href)="(?!data:)', text)
    body = "".join(p.text)
    for op in ("conv1", "conv2"):
        assert op in body
    assert "S16" in body  # the mixed-precision table lists conv2's int16 setting
    assert report.summary() in body or report.summary().replace("'", "&#x27;") in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium not installed")
def test_html_renders_in_chromium(html_report, tmp_path):
    _, path = html_report
    shot = tmp_path / "shot.png"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1200,2000",
        f"--screenshot={shot}",
        path.as_uri(),
    ]
    res = subprocess.run(cmd, capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", path.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert dom.returncode == 0
    assert "Quantization error analysis" in dom.stdout.decode() and "conv2" in dom.stdout.decode()
