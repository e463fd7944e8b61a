"""Encrypted export (issue 17 item 3): AES-128-CTR payload, plain header, key files, wrong-key errors.

The known-answer test decrypts with `cryptography` directly (counter block 0x10..0x1F, esp_dl_facts.md
§1.1), independent of espq's reader.
"""

from __future__ import annotations

import json
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq import espdl
from espq.errors import ConfigError, EspdlFormatError
from espq.quant.model import QuantizedModel

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # noqa: E402

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


@pytest.fixture(scope="module")
def qm() -> QuantizedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    return espq.quantize(net.eval(), data, target="esp32p4", input_shape=[1, 3, 6, 6], progress=False)


def _decrypt(blob: bytes, key: bytes) -> bytes:
    d = Cipher(algorithms.AES(key), modes.CTR(bytes(range(0x10, 0x20)))).decryptor()
    return d.update(blob) + d.finalize()


def test_known_answer_against_plain_export(qm: QuantizedModel, tmp_path: Path) -> None:
    qm.export(tmp_path / "plain.espdl", export_test_values=True)
    qm.export(tmp_path / "enc.espdl", export_test_values=True, key=KEY)
    plain = (tmp_path / "plain.espdl").read_bytes()
    enc = (tmp_path / "enc.espdl").read_bytes()
    assert len(enc) == len(plain) > 16
    # header plain except the mode field: EDL2 | mode 1 | same size | 4 zero bytes
    assert enc[:4] == plain[:4] == b"EDL2"
    assert struct.unpack_from("<I", plain, 4)[0] == 0 and struct.unpack_from("<I", enc, 4)[0] == 1
    assert enc[8:16] == plain[8:16]
    assert enc[16:] != plain[16:]
    assert _decrypt(enc[16:], KEY) == plain[16:]
    # espq reads it back with the key: the same model as the plain file
    assert espdl.write_bytes(espdl.read(enc, key=KEY)) == plain
    # a hex string and a key file are the same key
    (tmp_path / "k.key").write_text(KEY.hex() + "\n")
    qm.export(tmp_path / "hex.espdl", export_test_values=True, key=KEY.hex())
    qm.export(tmp_path / "file.espdl", export_test_values=True, key=tmp_path / "k.key")
    assert (tmp_path / "hex.espdl").read_bytes() == enc == (tmp_path / "file.espdl").read_bytes()


def test_auto_key_files_mode_0600(qm: QuantizedModel, tmp_path: Path) -> None:
    out = tmp_path / "m.espdl"
    qm.export(out, key="auto")
    key_file, header = tmp_path / "m.key", tmp_path / "m_key.h"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(header.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text().strip())
    assert len(key) == 16
    assert ", ".join(f"0x{b:02x}" for b in key) in header.read_text()
    assert "static uint8_t m_key[16]" in header.read_text()
    plain = espdl.write_bytes(espdl.read(out, key=key))
    assert _decrypt(out.read_bytes()[16:], key) == plain[16:]
    from espq.espdl.encrypt import read_key_file

    assert read_key_file(key_file) == key


def test_wrong_or_missing_key_is_a_clear_error(qm: QuantizedModel, tmp_path: Path) -> None:
    out = tmp_path / "e.espdl"
    qm.export(out, key=KEY)
    with pytest.raises(EspdlFormatError, match="wrong key or corrupt file"):
        espdl.read(out, key=bytes(16))
    with pytest.raises(EspdlFormatError, match="AES-encrypted"):
        espdl.read(out)
    with pytest.raises(ConfigError, match="16 bytes"):
        qm.export(tmp_path / "x.espdl", key=b"short")
    assert not (tmp_path / "x.espdl").exists()


def test_api_encrypt_data(tmp_path: Path) -> None:
    from espq.api import espdl_quantize_torch

    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    data = [torch.randn(2, 3, 6, 6) for _ in range(2)]
    out = tmp_path / "api.espdl"
    espdl_quantize_torch(
        net, str(out), data, calib_steps=2, input_shape=[1, 3, 6, 6], error_report=False, encrypt_data=True
    )
    key = bytes.fromhex((tmp_path / "api.key").read_text())
    assert struct.unpack_from("<I", out.read_bytes(), 4)[0] == 1
    assert len(espdl.read(out, key=key).graph.nodes) >= 1


def _cli(*args):
    from typer.testing import CliRunner

    from espq.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_inspect_and_run_with_key_file(qm: QuantizedModel, tmp_path: Path) -> None:
    out = tmp_path / "c.espdl"
    qm.export(out, export_test_values=True, key="auto")
    key_file = tmp_path / "c.key"
    r = _cli("inspect", out, "--key-file", key_file, "--json")
    assert r.exit_code == 0, r.output
    nodes = [n["name"] for n in json.loads(r.output)["nodes"]]
    assert nodes == [n.name for n in espdl.read(out, key=bytes.fromhex(key_file.read_text())).graph.nodes]
    assert len(nodes) == 4
    r = _cli("run", out, "--check", "--key-file", key_file)
    assert r.exit_code == 0, r.output
    assert "FAIL" not in r.output.upper()
    bad = tmp_path / "bad.key"
    bad.write_text("00" * 16)
    r = _cli("inspect", out, "--key-file", bad)
    assert r.exit_code == 2 and "wrong key or corrupt file" in r.output
    r = _cli("run", out, "--check")
    assert r.exit_code == 2 and "AES-encrypted" in r.output


def test_cli_quantize_encrypt(tmp_path: Path) -> None:
    from espq.frontends import export_torch

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    onnx_path = tmp_path / "tiny.onnx"
    onnx_path.write_bytes(export_torch(m, input_shape=[1, 3, 6, 6]).SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 3, 6, 6)).astype(np.float32))
    out = tmp_path / "q.espdl"
    args = ("quantize", onnx_path, "--calib", calib, "--steps", "1", "--batch-size", "8", "--out", out)
    r = _cli(*args, "--encrypt")
    assert r.exit_code == 0, r.output
    key_hex = (tmp_path / "q.key").read_text().strip()
    assert key_hex not in r.output  # the key is never printed
    assert struct.unpack_from("<I", out.read_bytes(), 4)[0] == 1
    (tmp_path / "mine.key").write_text(KEY.hex())
    out2 = tmp_path / "q2.espdl"
    r = _cli(*args[:-1], out2, "--encrypt", "--key-file", tmp_path / "mine.key")
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "q2.key").exists()
    assert _decrypt(out2.read_bytes()[16:], KEY) == espdl.write_bytes(espdl.read(out2, key=KEY))[16:]
