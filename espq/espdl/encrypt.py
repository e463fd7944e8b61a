"""AES keys for encrypted `.espdl` export (mode 1; esp_dl_facts.md §1.1).

The cipher itself is :func:`espq.espdl.container.aes_ctr` (AES-128-CTR, counter block 0x10..0x1F, the
header stays plain). This module turns the user's ``key=`` argument into 16 bytes and, for generated
keys, writes ``<stem>.key`` (hex text, mode 0600) and ``<stem>_key.h`` (a C array for the firmware's
``dl::Model(..., key)`` argument). Keys are never logged or printed.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from espq.errors import ConfigError

KeyArg = bytes | bytearray | str | os.PathLike | None
_HEX = re.compile(r"^(0x)?[0-9a-fA-F]{32}$")


def _from_hex(text: str, where: str) -> bytes:
    t = re.sub(r"[\s,:]", "", text.strip())
    if not _HEX.match(t):
        raise ConfigError(
            f"{where}: an AES-128 key must be 16 bytes or 32 hex digits (e.g. from 'espq quantize "
            "--encrypt'), got something else"
        )
    return bytes.fromhex(t[2:] if t.startswith("0x") else t)


def read_key_file(path: str | os.PathLike) -> bytes:
    """The 16-byte key stored in ``path``: 32 hex digits (espq's ``.key`` files) or 16 raw bytes."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file '{p}': {exc.strerror or exc}") from None
    if len(data) == 16:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return _from_hex(text, f"key file '{p}'")


def parse_key(key: bytes | bytearray | str | os.PathLike) -> bytes:
    """A user key as 16 bytes: raw bytes, a hex string, or a path to a key file."""
    if isinstance(key, (bytes, bytearray)):
        if len(key) != 16:
            raise ConfigError(f"key: an AES-128 key must be 16 bytes, got {len(key)} bytes")
        return bytes(key)
    if isinstance(key, str) and _HEX.match(re.sub(r"[\s,:]", "", key.strip())):
        return _from_hex(key, "key")
    if isinstance(key, (str, os.PathLike)) and Path(key).is_file():
        return read_key_file(key)
    raise ConfigError(
        "key: expected 16 bytes, 32 hex digits, a key file path or 'auto' (a fresh random key), "
        "got something else"
    )


def key_header_text(key: bytes, name: str) -> str:
    """A C header declaring ``<name>_key[16]`` for ``dl::Model(..., key)``."""
    ident = re.sub(r"\W", "_", name) or "model"
    if ident[0].isdigit():
        ident = f"m_{ident}"
    body = ", ".join(f"0x{b:02x}" for b in key)
    return (
        f"/* AES-128 key of {name}.espdl (written by espq). Keep it secret: do not commit it. */\n"
        "#pragma once\n#include <stdint.h>\n\n"
        f"static uint8_t {ident}_key[16] = {{{body}}};\n"
    )


def _write_private(path: Path, text: str) -> None:
    """Atomic write of a secret: the temporary file is 0600 before any byte is written."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write '{path}': {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write '{path}': {exc.strerror or exc}") from None


def key_file_texts(key: bytes, espdl_path: str | os.PathLike) -> dict[Path, str]:
    """``{<stem>.key: hex, <stem>_key.h: C header}``: the key files of ``espdl_path`` (write them 0600)."""
    stem = Path(espdl_path).with_suffix("")
    return {
        stem.with_suffix(".key"): key.hex() + "\n",
        stem.parent / f"{stem.name}_key.h": key_header_text(key, stem.name),
    }


def write_key_files(key: bytes, espdl_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.key`` (hex) and ``<stem>_key.h`` beside ``espdl_path``, both mode 0600."""
    texts = key_file_texts(key, espdl_path)
    for path, text in texts.items():
        _write_private(path, text)
    key_path, header_path = texts
    return key_path, header_path


def resolve_export_key(key: KeyArg) -> tuple[bytes | None, bool]:
    """``export(key=...)``: (16-byte key or None, whether it was generated and needs key files)."""
    if key is None:
        return None, False
    if isinstance(key, str) and key == "auto":
        return secrets.token_bytes(16), True
    return parse_key(key), False
