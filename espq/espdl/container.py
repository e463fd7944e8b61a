"""`.espdl` containers: EDL1/EDL2 single-model headers and PDL1/PDL2/PDL3 packages
(esp_dl_facts.md §1.1, §1.2; esp_ppq_facts.md §4.1). All integers little-endian.

EDL1: ``"EDL1" | u32 mode | u32 size | payload`` (12-byte header, legacy).
EDL2: ``"EDL2" | u32 mode | u32 size | 4 zero bytes | payload`` (16-byte header).
mode 0 = plain, 1 = AES-128-CTR encrypted payload (counter block bytes 0x10..0x1F).
PDL1/PDL2: ``magic | u32 n | n x (u32 data_offset, u32 name_offset, u32 name_len) | names | pad | files``.
PDL3: ``"PDL3" | char[16] version | u32 package_size | sha256[32] | u32 n | entries@60 | ...``, the
digest taken over bytes [0, package_size) with the digest field zeroed.
"""

from __future__ import annotations

import hashlib
import struct

from espq.errors import EspdlFormatError, MissingDependencyError

EDL_MAGICS = (b"EDL1", b"EDL2")
PDL_MAGICS = (b"PDL1", b"PDL2", b"PDL3")
_AES_CTR_IV = bytes(range(16, 32))


def header_size(fmt: str) -> int:
    return 12 if fmt == "EDL1" else 16


def _u32(data: bytes, pos: int, what: str, source: str) -> int:
    if pos + 4 > len(data):
        raise EspdlFormatError(
            f"{source}: truncated file at byte offset {pos}: {what} needs 4 bytes but the file "
            f"has {len(data)} bytes in all"
        )
    return struct.unpack_from("<I", data, pos)[0]


def aes_ctr(payload: bytes, key: bytes) -> bytes:
    """AES-128-CTR with ESP-DL's fixed counter block (encrypt = decrypt). Needs `cryptography`."""
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        raise MissingDependencyError(
            "encrypting or decrypting an .espdl (mode 1) needs the 'cryptography' package: "
            "pip install 'espq[crypto]' (or pip install cryptography)"
        ) from None
    if len(key) != 16:
        raise EspdlFormatError(f"the AES key must be 16 bytes, got {len(key)}")
    c = Cipher(algorithms.AES(bytes(key)), modes.CTR(_AES_CTR_IV)).decryptor()
    return c.update(payload) + c.finalize()


def split_edl(data: bytes, source: str = "<bytes>", key: bytes | None = None) -> tuple[str, int, int, bytes]:
    """Parse one EDL1/EDL2 file: returns (format, mode, payload_offset, plaintext payload).

    Trailing bytes after the payload are ignored, like the loader does.
    """
    if len(data) < 4:
        raise EspdlFormatError(
            f"{source}: file too short at byte offset {len(data)}: {len(data)} bytes, an .espdl file "
            "starts with a 12/16-byte EDL1/EDL2 header"
        )
    magic = bytes(data[:4])
    if magic in PDL_MAGICS:
        raise EspdlFormatError(
            f"{source}: magic {magic.decode()} at byte offset 0 marks a multi-model package, "
            "not a single model; "
            "use espq.espdl.read_package() to read it"
        )
    if magic not in EDL_MAGICS:
        raise EspdlFormatError(
            f"{source}: unknown magic {magic!r} at byte offset 0; expected b'EDL2' or b'EDL1' "
            "(or b'PDL1'/b'PDL2'/b'PDL3' for packages). Is this an .espdl file?"
        )
    fmt = magic.decode()
    mode = _u32(data, 4, "encryption mode", source)
    size = _u32(data, 8, "payload size", source)
    start = header_size(fmt)
    if fmt == "EDL2":
        if len(data) < 16:
            raise EspdlFormatError(
                f"{source}: truncated EDL2 header at byte offset {len(data)} (needs 16 bytes)"
            )
    if mode not in (0, 1):
        raise EspdlFormatError(f"{source}: unknown encryption mode {mode} at byte offset 4 (expected 0 or 1)")
    if start + size > len(data):
        raise EspdlFormatError(
            f"{source}: truncated payload at byte offset {len(data)}: the header (offset 8) declares "
            f"{size} payload bytes from offset {start}, but the file ends after {len(data) - start}"
        )
    payload = bytes(data[start : start + size])
    if mode == 1:
        if key is None:
            raise EspdlFormatError(
                f"{source}: the payload is AES-encrypted (mode 1 at byte offset 4); a 16-byte key is "
                "needed: pass key=... (the key ESP-PPQ printed at export)"
            )
        payload = aes_ctr(payload, key)
        # the header holds no key check: a FlatBuffer's root offset (u32 at 0) must be 4-aligned and
        # inside the payload; anything else means the key did not decrypt it
        root = struct.unpack_from("<I", payload, 0)[0] if len(payload) >= 4 else 1
        if root % 4 or root + 4 > len(payload):
            raise EspdlFormatError(wrong_key_message(source))
    return fmt, mode, start, payload


def wrong_key_message(source: str) -> str:
    """The error text for an encrypted file whose decrypted payload is not a model."""
    return (
        f"{source}: the decrypted payload is not an ESP-DL model: wrong key or corrupt file; "
        "pass the key written at export (<stem>.key)"
    )


def build_edl(payload: bytes, fmt: str = "EDL2", mode: int = 0, key: bytes | None = None) -> bytes:
    """Wrap a FlatBuffer payload in an EDL1/EDL2 header (mode 1 encrypts it with ``key``)."""
    if fmt not in ("EDL1", "EDL2"):
        raise EspdlFormatError(f"unknown single-model format '{fmt}'; use 'EDL2' (or legacy 'EDL1')")
    if mode == 1:
        if key is None:
            raise EspdlFormatError("writing an encrypted (mode 1) .espdl needs a 16-byte key")
        payload = aes_ctr(payload, key)
    elif mode != 0:
        raise EspdlFormatError(f"unknown encryption mode {mode}; use 0 (plain) or 1 (AES)")
    header = fmt.encode() + struct.pack("<II", mode, len(payload))
    if fmt == "EDL2":
        header += b"\0" * 4
    return header + payload


def split_package(data: bytes, source: str = "<bytes>") -> tuple[str, list[tuple[str, bytes, int]]]:
    """Parse a PDL1/2/3 package: returns (magic, [(name, sub-file bytes, file offset)]).

    PDL3: the SHA-256 is verified; a mismatch raises EspdlFormatError.
    """
    magic = bytes(data[:4])
    if magic in EDL_MAGICS:
        raise EspdlFormatError(
            f"{source}: is a single {magic.decode()} model, not a package; use espq.espdl.read() to read it"
        )
    if magic not in PDL_MAGICS:
        raise EspdlFormatError(
            f"{source}: unknown package magic {magic!r} at byte offset 0; "
            "expected b'PDL1', b'PDL2' or b'PDL3'"
        )
    kind = magic.decode()
    if kind == "PDL3":
        if len(data) < 60:
            raise EspdlFormatError(
                f"{source}: truncated PDL3 header at byte offset {len(data)} (needs 60 bytes)"
            )
        pkg_size = _u32(data, 20, "package_size", source)
        if pkg_size > len(data) or pkg_size < 60:
            raise EspdlFormatError(
                f"{source}: PDL3 package_size {pkg_size} (byte offset 20) does not fit "
                f"the {len(data)}-byte file"
            )
        stored = bytes(data[24:56])
        digest = hashlib.sha256(bytes(data[:24]) + b"\0" * 32 + bytes(data[56:pkg_size])).digest()
        if digest != stored:
            raise EspdlFormatError(
                f"{source}: PDL3 SHA-256 mismatch (digest at byte offset 24): "
                "the package is corrupt; repack it"
            )
        count_at = 56
        end = pkg_size
    else:
        count_at = 4
        end = len(data)
    n = _u32(data, count_at, "model count", source)
    table = count_at + 4
    if table + 12 * n > end:
        raise EspdlFormatError(
            f"{source}: truncated package at byte offset {end}: {n} model entries need "
            f"{12 * n} bytes from offset {table}"
        )
    models = []
    for i in range(n):
        data_off, name_off, name_len = struct.unpack_from("<III", data, table + 12 * i)
        if name_off + name_len > end:
            raise EspdlFormatError(
                f"{source}: package entry {i} (byte offset {table + 12 * i}) names bytes "
                f"[{name_off}, {name_off + name_len}) beyond the end ({end})"
            )
        try:
            name = bytes(data[name_off : name_off + name_len]).decode("utf-8")
        except UnicodeDecodeError:
            raise EspdlFormatError(f"{source}: model name at byte offset {name_off} is not UTF-8") from None
        if data_off >= end:
            raise EspdlFormatError(
                f"{source}: package entry {i} (byte offset {table + 12 * i}) points to model data at "
                f"{data_off}, beyond the end ({end})"
            )
        models.append((name, bytes(data[data_off:end]), data_off))
    return kind, models


def build_package(files: list[tuple[str, bytes]], kind: str = "PDL3", version: str = "v1.0") -> bytes:
    """Pack complete EDL files into a PDL1/PDL2/PDL3 package (like esp-dl's pack tool)."""
    if kind not in ("PDL1", "PDL2", "PDL3"):
        raise EspdlFormatError(f"unknown package kind '{kind}'; use PDL3, PDL2 or PDL1")
    want = b"EDL1" if kind == "PDL1" else b"EDL2"
    for name, blob in files:
        if blob[:4] != want:
            raise EspdlFormatError(f"model '{name}': {kind} packs {want.decode()} files, got {blob[:4]!r}")
    align = kind != "PDL1"
    blobs = [b + b"\0" * (-len(b) % 16) if align else b for _, b in files]
    names = [n.encode() for n, _ in files]
    fixed = 60 if kind == "PDL3" else 8
    name_off = fixed + 12 * len(files)
    data_off = name_off + sum(len(n) for n in names)
    pad = (-data_off % 16) if align else 0
    data_off += pad
    entries = b""
    for nm, blob in zip(names, blobs):
        entries += struct.pack("<III", data_off, name_off, len(nm))
        name_off += len(nm)
        data_off += len(blob)
    body = entries + b"".join(names) + b"\0" * pad + b"".join(blobs)
    if kind != "PDL3":
        return kind.encode() + struct.pack("<I", len(files)) + body
    ver = version.encode()
    if len(ver) > 15:
        raise EspdlFormatError(f"PDL3 package version '{version}' is longer than 15 bytes")
    size = 60 + len(body)
    head = b"PDL3" + ver.ljust(16, b"\0") + struct.pack("<I", size)
    tail = struct.pack("<I", len(files)) + body
    digest = hashlib.sha256(head + b"\0" * 32 + tail).digest()
    return head + digest + tail
