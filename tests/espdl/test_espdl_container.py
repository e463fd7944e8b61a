"""PDL1/PDL2/PDL3 packages and encryption (esp_dl_facts.md §1.1, §1.2)."""

from __future__ import annotations

import hashlib
import importlib.util
import struct

import pytest

from espq import espdl
from espq.errors import EspdlFormatError, MissingDependencyError
from espq.espdl.container import build_package, split_package

A = "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl"
B = "tutorial_3gemm_s3.espdl"


@pytest.fixture
def pair(shared) -> list[tuple[str, bytes]]:
    return [(A, shared("espdl-zoo", A).read_bytes()), (B, shared("espdl-zoo", B).read_bytes())]


def test_pdl3_layout_and_roundtrip(pair):
    pkg = build_package(pair, "PDL3", "v1.0")
    assert pkg[:4] == b"PDL3" and pkg[4:20] == b"v1.0" + b"\0" * 12
    assert struct.unpack_from("<I", pkg, 20)[0] == len(pkg)
    assert hashlib.sha256(pkg[:24] + b"\0" * 32 + pkg[56:]).digest() == pkg[24:56]
    assert struct.unpack_from("<I", pkg, 56)[0] == 2
    offsets = [struct.unpack_from("<III", pkg, 60 + 12 * i) for i in range(2)]
    assert all(off % 16 == 0 for off, _, _ in offsets)
    assert pkg[offsets[0][1] : offsets[0][1] + offsets[0][2]].decode() == A
    models = espdl.read_package(pkg)
    assert [n for n, _ in models] == [A, B]
    assert models[0][1] == espdl.read(pair[0][1]) and models[1][1] == espdl.read(pair[1][1])
    assert espdl.write_package_bytes(models) == pkg  # byte-identical models → identical package


@pytest.mark.parametrize("kind", ["PDL2", "PDL1"])
def test_pdl1_pdl2(pair, kind):
    files = pair
    if kind == "PDL1":  # PDL1 packs EDL1 files
        files = []
        for name, blob in pair:
            m = espdl.read(blob)
            m.format = "EDL1"
            files.append((name, espdl.write_bytes(m)))
    pkg = build_package(files, kind)
    assert pkg[:4] == kind.encode() and struct.unpack_from("<I", pkg, 4)[0] == 2
    models = espdl.read_package(pkg)
    assert [n for n, _ in models] == [A, B]
    assert [m.format for _, m in models] == (["EDL1"] * 2 if kind == "PDL1" else ["EDL2"] * 2)
    assert models[1][1].graph == espdl.read(pair[1][1]).graph


def test_pdl3_sha_mismatch(pair):
    pkg = bytearray(build_package(pair))
    pkg[-20] ^= 0xFF
    with pytest.raises(EspdlFormatError, match="SHA-256 mismatch .*offset 24"):
        espdl.read_package(bytes(pkg))


def test_package_errors(pair):
    pkg = build_package(pair, "PDL2")
    with pytest.raises(EspdlFormatError, match="offset"):
        espdl.read_package(pkg[:20])  # entry table cut
    bad = bytearray(pkg)
    struct.pack_into("<I", bad, 8, len(pkg) + 100)  # data offset beyond the end
    with pytest.raises(EspdlFormatError, match="beyond the end"):
        espdl.read_package(bytes(bad))
    with pytest.raises(EspdlFormatError, match="single EDL2 model.*read"):
        split_package(pair[0][1])
    with pytest.raises(EspdlFormatError, match="package magic b'ZZZZ' at byte offset 0"):
        espdl.read_package(b"ZZZZ" + bytes(60))
    with pytest.raises(EspdlFormatError, match="PDL2 packs EDL2"):
        build_package([("x", b"EDL1" + b"\0" * 12)], "PDL2")
    with pytest.raises(EspdlFormatError, match="read_package"):
        espdl.read(pkg)


def test_corrupt_model_inside_package_names_it(pair):
    pkg = bytearray(build_package(pair))
    off = struct.unpack_from("<I", pkg, 60 + 12)[0]  # second model
    pkg[off : off + 4] = b"XXXX"
    pkg[24:56] = hashlib.sha256(bytes(pkg[:24]) + b"\0" * 32 + bytes(pkg[56:])).digest()
    with pytest.raises(EspdlFormatError, match=f"model '{B}' at byte offset {off}"):
        espdl.read_package(bytes(pkg))


HAVE_CRYPTO = importlib.util.find_spec("cryptography") is not None


def test_encryption_needs_cryptography(pair, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # as if the package were not installed
    enc = pair[0][1][:4] + struct.pack("<I", 1) + pair[0][1][8:]
    with pytest.raises(MissingDependencyError, match="cryptography"):
        espdl.read(enc, key=bytes(16))


@pytest.mark.skipif(not HAVE_CRYPTO, reason="cryptography not installed")
def test_encryption_roundtrip(pair):
    key = bytes(range(16))
    model = espdl.read(pair[0][1])
    data = espdl.write_bytes(model, key=key)
    assert struct.unpack_from("<I", data, 4)[0] == 1 and data[16:] != pair[0][1][16:]
    decrypted = espdl.read(data, key=key)
    assert decrypted.mode == 1  # the file says it was encrypted; the content is the original model
    decrypted.mode = model.mode
    assert decrypted == model
