"""Reading and writing `.espdl` files and packages: the size-capped loader, the EDL/PDL containers, the
FlatBuffer payload, atomic writes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from espq.errors import EspdlFormatError
from espq.espdl.container import build_edl, build_package, split_edl, split_package, wrong_key_message
from espq.espdl.decode import decode_payload
from espq.espdl.encode import encode_payload
from espq.espdl.model import EspdlModel
from espq.utils import atomic_write_bytes

Source = str | os.PathLike | bytes | bytearray | memoryview


#: Largest `.espdl` file read (bytes); env ``ESPQ_MAX_ESPDL_BYTES`` overrides it. Real models are
#: at most tens of MB (ESP32-P4 flash is 16-32 MB); the cap stops ``/dev/zero``-like reads.
MAX_ESPDL_BYTES = 2 << 30


def max_espdl_bytes() -> int:
    """The read limit: ``ESPQ_MAX_ESPDL_BYTES`` when set (a positive integer), else MAX_ESPDL_BYTES."""
    raw = os.environ.get("ESPQ_MAX_ESPDL_BYTES")
    if raw is None:
        return MAX_ESPDL_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise EspdlFormatError(f"ESPQ_MAX_ESPDL_BYTES={raw!r} must be a positive number of bytes")
    return value


def _load(source: Source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = Path(source)
    limit = max_espdl_bytes()
    try:
        # stat before open: opening a FIFO blocks until a writer appears
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise EspdlFormatError(
                f"'{path}' is not a regular file (a device, FIFO or folder); give a .espdl file"
            )
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise EspdlFormatError(f"cannot read .espdl file '{path}': {exc.strerror or exc}") from None
    if len(data) > limit:
        raise EspdlFormatError(
            f"'{path}' is larger than {limit} bytes, more than any ESP-DL model; "
            "set ESPQ_MAX_ESPDL_BYTES to read it anyway"
        )
    return data, str(path)


def _decode_edl(data: bytes, source: str, key: bytes | None, base: int = 0) -> EspdlModel:
    fmt, mode, start, payload = split_edl(data, source, key)
    try:
        return decode_payload(payload, base + start, source, fmt, mode)
    except EspdlFormatError:
        if mode != 1:
            raise
        raise EspdlFormatError(wrong_key_message(source)) from None  # encrypted: most likely the key


def read(source: Source, key: bytes | None = None) -> EspdlModel:
    """Read a single-model `.espdl` file (EDL2, or legacy EDL1).

    ``key``: the 16-byte AES key for encrypted files (mode 1; needs the `cryptography` package).
    A PDL package raises EspdlFormatError pointing to :func:`read_package`.
    """
    data, name = _load(source)
    return _decode_edl(data, name, key)


def read_package(source: Source, key: bytes | None = None) -> list[tuple[str, EspdlModel]]:
    """Read a PDL1/PDL2/PDL3 multi-model package: ``[(model name, model), ...]`` in stored order.

    PDL3 packages have their SHA-256 checked (EspdlFormatError on mismatch).
    """
    data, name = _load(source)
    _, entries = split_package(data, name)
    return [
        (model_name, _decode_edl(blob, f"{name} [model '{model_name}' at byte offset {off}]", key, off))
        for model_name, blob, off in entries
    ]


def write_bytes(model: EspdlModel, key: bytes | None = None) -> bytes:
    """The complete file for ``model``: ``model.format`` header (EDL2 by default) + payload.

    With ``key`` the payload is AES-128-CTR encrypted (mode 1). Deterministic: the same model
    always gives the same bytes.
    """
    payload = encode_payload(model)
    return build_edl(payload, model.format, 1 if key is not None else 0, key)


def write(model: EspdlModel, path: str | os.PathLike, key: bytes | None = None) -> None:
    """Write ``model`` to ``path`` atomically (temporary file in the same folder + os.replace)."""
    atomic_write_bytes(path, write_bytes(model, key))


def write_package_bytes(
    models: list[tuple[str, EspdlModel]], kind: str = "PDL3", version: str = "v1.0"
) -> bytes:
    """A PDL3 (default), PDL2 or PDL1 package of ``models`` (names as given, e.g. "foo.espdl")."""
    return build_package([(n, write_bytes(m)) for n, m in models], kind, version)
