"""Small shared helpers: atomic file writes, the output-path rule."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from espq.errors import ConfigError


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers never see a half-written file; on error the previous file (if any) is untouched.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write '{p}': {exc.strerror or exc}; choose a writable output path"
        ) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write '{p}': {exc.strerror or exc}; choose a writable output path"
        ) from exc


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


#: how the start of an existing file shows espq wrote it, by suffix (anything else needs overwrite)
_ESPQ_PREFIXES: dict[str, tuple[bytes, ...]] = {
    ".espdl": (b"EDL1", b"EDL2", b"PDL1", b"PDL2", b"PDL3"),
    ".info": (b"model properties:\n",),
    ".json": (b"{",),
    ".html": (b"<!doctype html", b"<html"),
}


def _written_by_espq(path: Path) -> bool:
    """Whether the existing regular file ``path`` looks like an espq output of its kind.

    The rule is the file's start: ``.espdl`` its magic, ``.info`` espq's first line, ``.json`` a JSON
    object, ``.html`` an HTML document, ``.onnx`` espq's ``espq_written`` metadata entry.
    """
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception:  # noqa: BLE001 - any unreadable file is "not ours"
            return False
        return any(p.key == "espq_written" for p in proto.metadata_props)
    prefixes = _ESPQ_PREFIXES.get(suffix)
    if prefixes is None:
        return False
    with open(path, "rb") as f:
        head = f.read(64).lstrip().lower()
    return head.startswith(tuple(p.lower() for p in prefixes))


def check_outputs(
    outputs: Iterable[str | Path], inputs: Iterable[str | Path | None], overwrite: bool = False
) -> None:
    """Refuse to write any of ``outputs`` where that would destroy data.

    Raises ConfigError when an output resolves to one of ``inputs`` (even with ``overwrite``), when two
    outputs resolve to the same file, when an output exists and is not a regular file, or when it exists
    and espq did not write it (see :func:`_written_by_espq`) unless ``overwrite`` is true.
    """
    ins = [Path(p) for p in inputs if p is not None]
    in_real = {os.path.realpath(p) for p in ins}
    seen: dict[str, Path] = {}
    for out in map(Path, outputs):
        real = os.path.realpath(out)
        if real in in_real or any(p.exists() and out.exists() and os.path.samefile(p, out) for p in ins):
            raise ConfigError(
                f"output '{out}' is an input file; espq never overwrites its input, choose another "
                "output path (--out / the export path)"
            )
        if real in seen:
            raise ConfigError(
                f"outputs '{seen[real]}' and '{out}' are the same file (side files are <stem>.info / "
                "<stem>.json); choose output paths that differ"
            )
        seen[real] = out
        if not os.path.lexists(out):
            continue
        if not out.is_file():
            raise ConfigError(f"output '{out}' exists and is not a regular file; choose another path")
        if not overwrite and not _written_by_espq(out):
            raise ConfigError(
                f"output '{out}' exists and was not written by espq; pass --force (CLI) or "
                "overwrite=True (API) to replace it, or choose another path"
            )


def require_regular_file(path: str | Path) -> Path:
    """``path`` as a Path when it names an existing regular file, else ConfigError.

    Reading a FIFO, a device or a folder would block or fail late (``espq inspect`` on a FIFO hung).
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"no such file: '{p}'")
    if not p.is_file():
        raise ConfigError(f"'{p}' is not a regular file (a FIFO, device or folder); give a .espdl file")
    return p
