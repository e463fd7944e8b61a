"""Small shared helpers: atomic file writes, the output-path rule, a safe ``.npz`` writer."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from espq.errors import ConfigError

try:
    import fcntl
except ImportError:  # Windows: sets are written without a folder lock
    fcntl = None  # type: ignore[assignment]

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Readers never see a half-written file; on error the previous file (if any) is untouched. The file
    gets the mode ``open()`` would give a new file (0666 less the umask: 0644 with umask 022), not
    ``mkstemp``'s 0600; secrets are written by :mod:`espq.espdl.encrypt`, which keeps 0600.
    """
    p = Path(path)
    tmp = None
    try:
        tmp = _temp_beside(p, data, 0o666 & ~current_umask())
        os.replace(tmp, p)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise _cannot_write(p, exc) from exc


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _cannot_write(p: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"cannot write '{p}': {exc.strerror or exc}; choose a writable output path")


def _temp_beside(p: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new temporary file in ``p``'s folder with ``mode``; its path."""
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


@contextlib.contextmanager
def _folder_locks(folders: Iterable[Path]) -> Iterator[None]:
    """Exclusive ``flock`` on each folder (sorted), so two espq runs commit their sets one after the other.

    Where ``flock`` is missing (Windows) or a folder cannot be locked, the set is still written, unlocked.
    """
    fds: list[int] = []
    try:
        for folder in sorted({os.path.realpath(f) for f in folders}):
            if fcntl is None:
                break
            try:
                fd = os.open(folder, os.O_RDONLY)
            except OSError:
                continue
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                pass
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing releases the lock


def _backup(p: Path) -> Path | None:
    """A hard link (or copy) of the existing file ``p`` under a temporary name, or None if ``p`` is new."""
    if not os.path.lexists(p):
        return None
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".old", dir=p.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(p, tmp)
    except OSError:
        shutil.copy2(p, tmp)
    return Path(tmp)


def atomic_write_set(files: Mapping[str | Path, bytes | str], private: Iterable[str | Path] = ()) -> None:
    """Write several files as one set: all of them or none.

    Every file is first written to a temporary name beside it (``str`` as UTF-8); only when all are
    complete are they renamed into place, one folder lock held (two espq runs to the same outputs never
    mix their files). On any failure the temporary files are removed and the files already replaced get
    their old contents back (files that did not exist are removed), so an older set stays intact.
    Modes follow the umask as in :func:`atomic_write_bytes`; paths in ``private`` get 0600 (secrets).
    Raises ConfigError when a file cannot be written.
    """
    items = [(Path(p), d.encode("utf-8") if isinstance(d, str) else d) for p, d in files.items()]
    secret = {os.path.realpath(p) for p in private}
    public_mode = 0o666 & ~current_umask()
    temps: list[tuple[Path, Path]] = []
    try:
        for p, data in items:
            mode = 0o600 if os.path.realpath(p) in secret else public_mode
            try:
                temps.append((p, _temp_beside(p, data, mode)))
            except OSError as exc:
                raise _cannot_write(p, exc) from exc
        done: list[tuple[Path, Path | None]] = []
        with _folder_locks(p.parent for p, _ in temps):
            try:
                for p, tmp in temps:
                    old = _backup(p)
                    try:
                        os.replace(tmp, p)
                    except BaseException:
                        if old is not None:
                            old.unlink(missing_ok=True)
                        raise
                    done.append((p, old))
            except BaseException as exc:
                failed = p
                for q, old in reversed(done):  # best effort: one failed restore does not stop the rest
                    with contextlib.suppress(OSError):
                        if old is not None:
                            os.replace(old, q)
                        else:
                            os.unlink(q)
                if isinstance(exc, OSError):
                    raise _cannot_write(failed, exc) from exc
                raise
        for _, old in done:
            if old is not None:
                old.unlink(missing_ok=True)
    finally:
        for _, tmp in temps:
            tmp.unlink(missing_ok=True)


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


def is_foreign_file(path: str | Path) -> bool:
    """Whether ``path`` is an existing regular file that espq did not write (see :func:`check_outputs`)."""
    p = Path(path)
    return p.is_file() and not _written_by_espq(p)


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


def npz_member_name(name: str) -> str:
    """``name`` as a safe ``.npz`` member: path separators, ``..`` and control characters become ``_``."""
    safe = "".join("_" if c in "/\\:" or ord(c) < 32 else c for c in name)
    safe = safe.replace("..", "__").strip(" .") or "_"
    return safe


def save_npz(path: str | Path, arrays: dict[str, Any]) -> tuple[Path, dict[str, str]]:
    """Write ``arrays`` to an uncompressed ``.npz`` that ``np.load`` reads back by name, atomically.

    Unlike ``np.savez(path, **arrays)``, names such as ``file`` or ``allow_pickle`` are stored as
    members (they were swallowed as keyword arguments). Names are made safe with
    :func:`npz_member_name` (numbered when two collide); ``.npz`` is appended when ``path`` lacks it.
    Returns the path really written and ``{tensor name: member name}`` for the names that changed.
    """
    p = Path(path)
    if p.suffix.lower() != ".npz":
        p = p.with_name(p.name + ".npz")
    renamed: dict[str, str] = {}
    used: set[str] = set()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, value in arrays.items():
            member = base = npz_member_name(str(name))
            i = 1
            while member in used:
                member, i = f"{base}_{i}", i + 1
            used.add(member)
            if member != name:
                renamed[str(name)] = member
            info = zipfile.ZipInfo(member + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asanyarray(value), allow_pickle=False)
    atomic_write_bytes(p, buf.getvalue())
    return p, renamed
