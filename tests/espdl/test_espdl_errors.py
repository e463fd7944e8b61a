"""Corrupt input never escapes as anything but EspdlFormatError, and messages name a byte offset."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from espq import espdl
from espq.errors import EspdlFormatError
from espq.espdl import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.fbs import FbsBuffer

SMALL = "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl"  # 1824 bytes, test values inside


@pytest.fixture
def small(shared) -> bytes:
    return shared("espdl-zoo", SMALL).read_bytes()


def _fails(data: bytes, match: str = "offset") -> EspdlFormatError:
    with pytest.raises(EspdlFormatError, match=match) as info:
        espdl.read(data)
    return info.value


def test_empty_file():
    _fails(b"", "offset 0")


def test_wrong_magic(small):
    _fails(b"ONNX" + small[4:], "unknown magic b'ONNX' at byte offset 0")
    _fails(b"\x08\x07\x12\x04", "unknown magic")


def test_truncated_header(small):
    _fails(small[:6], "byte offset 4")
    _fails(small[:14], "truncated EDL2 header at byte offset 14")


def test_payload_length_larger_than_file(small):
    bad = small[:8] + struct.pack("<I", len(small)) + small[12:]
    assert len(small) == 1824
    err = _fails(bad, "truncated payload at byte offset 1824")
    assert "offset 8" in str(err)


def test_unknown_mode(small):
    _fails(small[:4] + struct.pack("<I", 7) + small[8:], "encryption mode 7 at byte offset 4")


def test_encrypted_file_needs_key(small):
    enc = small[:4] + struct.pack("<I", 1) + small[8:]
    _fails(enc, "encrypted .* key")


def test_garbage_payload_after_valid_header():
    rng = random.Random(1234)
    for size in (16, 64, 256, 4096):
        payload = bytes(rng.randrange(256) for _ in range(size))
        data = b"EDL2" + struct.pack("<II", 0, size) + b"\0" * 4 + payload
        _fails(data, "offset")


def test_payload_root_offset_out_of_range():
    payload = struct.pack("<I", 0xFFFFFF00) + b"\0" * 12
    err = _fails(b"EDL2" + struct.pack("<II", 0, 16) + b"\0" * 4 + payload, "byte offset 16")
    assert "root table offset" in str(err)


@pytest.mark.parametrize("cut", [1, 3, 12, 15, 16, 17, 100, 900, 1500, 1823])
def test_truncated_real_file(small, cut):
    _fails(small[:cut], "offset")


@pytest.mark.parametrize("cut", [20, 400, 1000, 1800])
def test_truncated_payload_with_patched_size(small, cut):
    """The header agrees with the shorter file, so the FlatBuffer walk itself must catch it."""
    data = small[:8] + struct.pack("<I", cut - 16) + small[12:cut]
    err = _fails(data, "offset")
    assert "payload" in str(err)


def test_package_passed_to_read_points_to_read_package():
    _fails(b"PDL3" + b"\0" * 60, "read_package")


def test_missing_file(tmp_path):
    with pytest.raises(EspdlFormatError, match="cannot read"):
        espdl.read(tmp_path / "nope.espdl")


def test_fuzz_small_file(small):
    """Random byte changes and truncations (fixed seed): only EspdlFormatError may escape."""
    rng = random.Random(20261127)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        data = bytearray(small)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            espdl.read(bytes(data))
            outcomes["ok"] += 1
        except EspdlFormatError as exc:
            assert "offset" in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 10


def test_shared_references_cannot_blow_up_memory():
    """A vector whose entries all point at one large tensor is cut off by the copy budget."""
    big = EspdlTensor.from_array("big", np.zeros(64 * 1024, np.int8), 3, [0])
    inits = {"big": big} | {
        f"w{i}": EspdlTensor.from_array(f"w{i}", np.ones(1, np.int8), 3, [0]) for i in range(40)
    }
    x = EspdlValueInfo("x", 3, [1], [0])
    graph = EspdlGraph(
        "g", [EspdlNode("n", "Relu", ["x"], ["x"], {"quant_type": "S8"})], inits, [x], [x], [x]
    )
    payload = bytearray(espdl.write_bytes(EspdlModel(graph))[16:])
    buf = FbsBuffer(bytes(payload))
    vec_start, n = buf.root().table(7, "graph").vector_start(2, "initializer", 4)
    first = buf.uoffset(vec_start, "entry")
    for i in range(n):
        struct.pack_into("<I", payload, vec_start + 4 * i, first - (vec_start + 4 * i))
    _fails(b"EDL2" + struct.pack("<II", 0, len(payload)) + b"\0" * 4 + bytes(payload), "referenced far more")
