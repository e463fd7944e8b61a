"""``espq pack`` gives the bytes of ESP-DL's ``esp-dl/fbs_loader/pack_espdl_models.py`` (issue 17 item 4).

The tool's rules, rebuilt here from its source (espressif/esp-dl, MIT) without running it:

* ``-m a b c`` packs the files sorted by path string; ``-m DIR`` packs ``sorted(DIR.glob("*.espdl"))``;
* each model is the whole input file, an EDL2 one zero-padded to a multiple of 16 (PDL2/PDL3);
* PDL1 (EDL1 inputs) is unpadded; the names follow the 12-byte entries, then zeros up to 16 (PDL2/3);
* PDL3: ``"PDL3" | version[16] | size | sha256[32] | n | entries | names | pad | models``, the digest
  over the package with its own 32 bytes zeroed.

The pinned SHA-256 values are of the real tool's output on copies of the shared zoo files (ESP-DL
12c0616, run on 2026-12-02), so a layout drift in both espq and the reference below still fails.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from espq.cli import app
from espq.espdl.container import build_edl
from espq.espdl.pack import model_files, pack, pack_bytes

ZOO = [
    "tutorial_3gemm_p4.espdl",
    "streaming_esp32p4_model.espdl",
    "optest_esp32p4_gemm_ishap_1_31_kshap_32_31_relu_s8.espdl",
]
# sha256 of `pack_espdl_models.py -m <ZOO in this order> -f PDL3 / -f PDL2` (the tool sorts them)
TOOL_SHA256 = {
    "PDL3": "8fa74ea654312617f8aede08cbb9bc37459995f81ac44f432ee1a52222ad6f94",
    "PDL2": "cb635bcd19fba892ab268e23a805374f028471789a44783e310d0fb0aada899e",
}


def _tool_layout(files: list[tuple[str, bytes]], fmt: str, version: str = "v1.0") -> bytes:
    """The tool's package of (name, file bytes) in the given order."""
    aligned = fmt != "PDL1"
    bodies = [b + bytes(-len(b) % 16) if aligned else b for _, b in files]
    names = [n.encode("ascii") for n, _ in files]
    table_at = 60 if fmt == "PDL3" else 8
    name_at = table_at + 12 * len(files)
    data_at = name_at + sum(map(len, names))
    pad = -data_at % 16 if aligned else 0
    data_at += pad
    entries = b""
    for name, body in zip(names, bodies):
        entries += struct.pack("<3I", data_at, name_at, len(name))
        name_at, data_at = name_at + len(name), data_at + len(body)
    rest = entries + b"".join(names) + bytes(pad) + b"".join(bodies)
    if fmt != "PDL3":
        return fmt.encode() + struct.pack("<I", len(files)) + rest
    size = 60 + len(rest)
    blank = b"PDL3" + version.encode().ljust(16, b"\0") + struct.pack("<I", size) + bytes(32)
    blank += struct.pack("<I", len(files)) + rest
    return blank[:24] + hashlib.sha256(blank).digest() + blank[56:]


@pytest.fixture
def zoo_copies(shared, tmp_path: Path) -> list[Path]:
    """The zoo files copied into one folder, in ZOO's (unsorted) order."""
    out = []
    for name in ZOO:
        out.append(tmp_path / name)
        shutil.copyfile(shared("espdl-zoo", name), out[-1])
    return out


def _payload(path: Path) -> bytes:
    blob = path.read_bytes()
    return blob[16 : 16 + struct.unpack_from("<I", blob, 8)[0]]


@pytest.mark.parametrize("fmt", ["PDL3", "PDL2"])
def test_pack_equals_the_tool_for_unsorted_inputs(zoo_copies: list[Path], fmt: str) -> None:
    data = pack_bytes(zoo_copies, fmt)
    assert hashlib.sha256(data).hexdigest() == TOOL_SHA256[fmt]
    ordered = sorted(zoo_copies, key=str)
    assert [p.name for p in ordered] != ZOO  # the order really changes
    assert data == _tool_layout([(p.name, p.read_bytes()) for p in ordered], fmt)
    # a package input keeps its models' order: the tool's file re-packs to the same bytes
    pkg = zoo_copies[0].parent / "tool.espdl"
    pkg.write_bytes(data)
    assert pack_bytes([pkg], fmt) == data
    # sort=False keeps the given order (espq's old behaviour, --keep-order)
    kept = pack_bytes(zoo_copies, fmt, sort=False)
    assert kept == _tool_layout([(p.name, p.read_bytes()) for p in zoo_copies], fmt)
    assert kept != data


def test_pack_a_folder_like_the_tool(zoo_copies: list[Path], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    assert [p.name for p in model_files([tmp_path])] == sorted(ZOO)
    out = pack([tmp_path], tmp_path / "sub" / "models.bin")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == TOOL_SHA256["PDL3"]


@pytest.mark.parametrize("fmt", ["PDL3", "PDL2"])
def test_odd_length_edl2_is_padded_per_model(zoo_copies: list[Path], tmp_path: Path, fmt: str) -> None:
    odd = []
    for extra, src in zip((5, 9), zoo_copies):
        odd.append(tmp_path / f"odd_{src.name}")
        odd[-1].write_bytes(build_edl(_payload(src) + bytes(extra), "EDL2"))
        assert odd[-1].stat().st_size % 16 == extra
    data = pack_bytes(odd, fmt, version="v2.3-test")
    assert data == _tool_layout([(p.name, p.read_bytes()) for p in sorted(odd, key=str)], fmt, "v2.3-test")
    entries = [struct.unpack_from("<3I", data, (60 if fmt == "PDL3" else 8) + 12 * i) for i in range(2)]
    assert all(off % 16 == 0 for off, _, _ in entries)
    (tmp_path / "p.espdl").write_bytes(data)
    assert pack_bytes([tmp_path / "p.espdl"], fmt, version="v2.3-test") == data


def test_pdl1_of_edl1_files(zoo_copies: list[Path], tmp_path: Path) -> None:
    v1 = []
    for src in zoo_copies:
        v1.append(tmp_path / src.name.replace(".espdl", "_v1.espdl"))
        v1[-1].write_bytes(build_edl(_payload(src), "EDL1"))
    data = pack_bytes(v1, "PDL1")
    assert data == _tool_layout([(p.name, p.read_bytes()) for p in sorted(v1, key=str)], "PDL1")
    assert len(data) == 8 + 36 + sum(len(p.name) for p in v1) + sum(p.stat().st_size for p in v1)
    (tmp_path / "p1.espdl").write_bytes(data)
    assert pack_bytes([tmp_path / "p1.espdl"], "PDL1") == data


def test_cli_pack_sorts_unless_keep_order(zoo_copies: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "m.espdl"
    r = runner.invoke(app, ["pack", *map(str, zoo_copies), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert hashlib.sha256(out.read_bytes()).hexdigest() == TOOL_SHA256["PDL3"]
    r = runner.invoke(app, ["pack", *map(str, zoo_copies), "-o", str(out), "--keep-order"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes() == pack_bytes(zoo_copies, sort=False)
    r = runner.invoke(app, ["inspect", str(out)])
    assert r.exit_code == 0 and f"[0] {ZOO[0]}" in r.output
