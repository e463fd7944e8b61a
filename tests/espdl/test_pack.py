"""``espq pack`` / ``espq.espdl.pack`` (issue 17 item 4): PDL1/PDL2/PDL3 packages of real zoo files.

``_reference_package`` re-implements the layout independently from esp_dl_facts.md §1.2 (the table,
not espq's code): the package must match it byte for byte, and split → re-pack must give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from espq import espdl
from espq.cli import app
from espq.errors import ConfigError
from espq.espdl.pack import load_model, pack, pack_bytes, package_summary

NAMES = [
    "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl",  # 1824 bytes (a multiple of 16)
    "streaming_esp32p4_model.espdl",
    "tutorial_3gemm_p4.espdl",
]


def _pad16(b: bytes) -> bytes:
    return b + bytes((16 - len(b) % 16) % 16)


def _reference_package(files: list[tuple[str, bytes]], fmt: str, version: str = "v1.0") -> bytes:
    """PDL1/2/3 from the §1.2 table: header, n x (data_offset, name_offset, name_len), names, pad, files."""
    n = len(files)
    table_at = 60 if fmt == "PDL3" else 8
    names = b"".join(name.encode() for name, _ in files)
    first = table_at + 12 * n + len(names)
    aligned = fmt != "PDL1"
    if aligned:
        first = (first + 15) // 16 * 16
    bodies = [_pad16(b) if aligned else b for _, b in files]
    table, name_at, data_at = b"", table_at + 12 * n, first
    for (name, _), body in zip(files, bodies):
        table += struct.pack("<3I", data_at, name_at, len(name.encode()))
        name_at += len(name.encode())
        data_at += len(body)
    rest = table + names + bytes(first - table_at - 12 * n - len(names)) + b"".join(bodies)
    if fmt != "PDL3":
        return fmt.encode() + struct.pack("<I", n) + rest
    size = 60 + len(rest)
    blank = b"PDL3" + version.encode().ljust(16, b"\0") + struct.pack("<I", size) + bytes(32)
    blank += struct.pack("<I", n) + rest
    return blank[:24] + hashlib.sha256(blank).digest() + blank[56:]


@pytest.fixture
def zoo(shared) -> list[Path]:
    return [shared("espdl-zoo", n) for n in NAMES]


@pytest.mark.parametrize("fmt", ["PDL3", "PDL2"])
def test_pack_matches_reference_layout_and_repacks(zoo: list[Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "models.espdl"
    pack(zoo, out, fmt)
    data = out.read_bytes()
    ref = _reference_package([(p.name, p.read_bytes()) for p in zoo], fmt)
    assert data == ref
    # split -> re-pack: the same bytes (a package input contributes its models)
    assert pack_bytes([out], fmt) == data
    summary = package_summary(out)
    assert summary["format"] == fmt and [m["name"] for m in summary["models"]] == NAMES
    assert [m["bytes"] for m in summary["models"]] == [p.stat().st_size for p in zoo]
    assert load_model(out, model=NAMES[2]) == espdl.read(zoo[2])
    assert load_model(out, model="1") == espdl.read(zoo[1])


def test_pack_errors(zoo: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pdl3"):
        pack_bytes(zoo, "PDL9")
    with pytest.raises(ConfigError, match="twice"):
        pack_bytes([zoo[0], zoo[0]])
    out = tmp_path / "p.espdl"
    pack(zoo[:2], out)
    with pytest.raises(ConfigError, match="--model NAME"):
        load_model(out)
    with pytest.raises(ConfigError, match="no model 'x.espdl'"):
        load_model(out, model="x.espdl")


def test_cli_pack_inspect_run(zoo: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "models.espdl"
    r = runner.invoke(app, ["pack", *map(str, zoo), "-o", str(out), "--format", "pdl3"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == _reference_package([(p.name, p.read_bytes()) for p in zoo], "PDL3")
    r = runner.invoke(app, ["inspect", str(out), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["format"] == "PDL3" and d["version"] == "v1.0"
    assert [m["name"] for m in d["models"]] == NAMES
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and "[2] tutorial_3gemm_p4.espdl  7664 bytes" in r.output
    r = runner.invoke(app, ["inspect", str(out), "--model", NAMES[2], "--json"])
    assert r.exit_code == 0, r.output
    assert [n["name"] for n in json.loads(r.output)["nodes"]] == [
        n.name for n in espdl.read(zoo[2]).graph.nodes
    ]
    r = runner.invoke(app, ["run", str(out), "--model", NAMES[2], "--check", "--target", "esp32p4"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["run", str(out), "--check"])
    assert r.exit_code == 2 and "--model NAME" in r.output
