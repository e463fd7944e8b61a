"""Multi-model packages (PDL1/PDL2/PDL3, esp_dl_facts.md §1.2) and loading a model from a file that
may be a package or encrypted: the library side of ``espq pack`` and of ``espq inspect/run --key-file
--model``.

The byte layout lives in :mod:`espq.espdl.container` (``build_package``/``split_package``); like
ESP-DL's ``pack_espdl_models.py`` a model's name is its input file's name (``foo.espdl``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

from espq.errors import ConfigError, EspdlFormatError
from espq.espdl.container import PDL_MAGICS, build_package, header_size, split_package
from espq.espdl.inspect import printable
from espq.espdl.model import EspdlModel
from espq.utils import atomic_write_bytes

PACKAGE_FORMATS = ("PDL3", "PDL2", "PDL1")


def _read(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` through the reader's checks (a regular file, at most the size limit)."""
    from espq.espdl.files import _load

    return _load(path)[0]


def _is_package(path: str | os.PathLike) -> bool:
    """Whether the regular file ``path`` starts with a PDL magic (reads 4 bytes)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in PDL_MAGICS
    except OSError:
        return False  # the single-model reader reports it


def edl_length(blob: bytes, source: str) -> int:
    """The length of the EDL1/EDL2 file at the start of ``blob`` (header + declared payload size)."""
    if len(blob) < 12 or blob[:4] not in (b"EDL1", b"EDL2"):
        raise EspdlFormatError(f"{source}: not an EDL1/EDL2 model (magic {bytes(blob[:4])!r})")
    n = header_size(blob[:4].decode()) + struct.unpack_from("<I", blob, 8)[0]
    if n > len(blob):
        raise EspdlFormatError(
            f"{source}: truncated model: the header declares {n} bytes, {len(blob)} present"
        )
    return n


def package_models(data: bytes, source: str = "<bytes>") -> tuple[str, list[tuple[str, bytes]]]:
    """(format, [(name, complete EDL file without the package's padding)]) of a package."""
    kind, entries = split_package(data, source)
    return kind, [(n, blob[: edl_length(blob, f"{source} [model '{n}']")]) for n, blob, _ in entries]


def model_files(files: Sequence[str | os.PathLike], sort: bool = True) -> list[Path]:
    """The files a package is built from, in the order ESP-DL's ``pack_espdl_models.py`` uses.

    The tool sorts its ``-m`` arguments as strings and takes the sorted ``*.espdl`` of a single folder;
    ``sort=False`` keeps the given order (a folder is still read sorted).
    """
    if len(files) == 1 and Path(files[0]).is_dir():
        found = sorted(Path(files[0]).glob("*.espdl"))
        if not found:
            raise ConfigError(f"pack: folder '{files[0]}' holds no .espdl file")
        return found
    names = [os.fspath(f) for f in files]
    return [Path(f) for f in (sorted(names) if sort else names)]


def pack_bytes(
    files: Sequence[str | os.PathLike], fmt: str = "PDL3", version: str = "v1.0", sort: bool = True
) -> bytes:
    """A PDL3 (default), PDL2 or PDL1 package of the ``.espdl`` ``files``, named by file name.

    Models are in :func:`model_files` order (sorted by path, as ESP-DL's tool does, unless ``sort`` is
    false); an input that is itself a package contributes its models in their stored order (so a
    package re-packs to the same bytes).
    """
    fmt = fmt.upper()
    if fmt not in PACKAGE_FORMATS:
        raise ConfigError(f"unknown package format '{fmt}'; use pdl3 (default), pdl2 or pdl1")
    if not files:
        raise ConfigError("pack: give at least one .espdl file")
    models: list[tuple[str, bytes]] = []
    for f in model_files(files, sort):
        data = _read(f)
        if data[:4] in PDL_MAGICS:
            models += package_models(data, str(f))[1]
        else:
            models.append((Path(f).name, data))
    names = [n for n, _ in models]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"pack: model name(s) {dup} appear twice; the loader finds models by name")
    return build_package(models, fmt, version)


def pack(
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    fmt: str = "PDL3",
    version: str = "v1.0",
    sort: bool = True,
) -> Path:
    """Write a package of ``files`` to ``out`` atomically (same bytes as ESP-DL's pack tool)."""
    out = Path(out)
    if any(Path(f).resolve() == out.resolve() for f in model_files(files, sort)):
        raise ConfigError(f"pack: the output '{out}' is one of the inputs; choose another -o path")
    atomic_write_bytes(out, pack_bytes(files, fmt, version, sort))
    return out


def package_summary(path: str | os.PathLike) -> dict | None:
    """``{"format", "version", "models": [{"name", "bytes"}]}`` of a package; None for anything else."""
    if not Path(path).is_file() or not _is_package(path):
        return None  # the single-model reader reports it / reads it
    data = _read(path)
    kind, models = package_models(data, str(path))
    version = data[4:20].split(b"\0")[0].decode("ascii", "replace") if kind == "PDL3" else None
    return {"format": kind, "version": version, "models": [{"name": n, "bytes": len(b)} for n, b in models]}


def format_package_summary(d: dict, file: str) -> str:
    """The text ``espq inspect`` prints for a package."""
    ver = f" {d['version']}" if d["version"] else ""
    lines = [f"{file}: {d['format']}{ver} package, {len(d['models'])} model(s):"]
    lines += [f"  [{i}] {printable(m['name'])}  {m['bytes']} bytes" for i, m in enumerate(d["models"])]
    lines.append("Inspect one with --model NAME.")
    return "\n".join(lines)


def load_model(path: str | os.PathLike, key: bytes | None = None, model: str | None = None) -> EspdlModel:
    """One model of ``path``: a single ``.espdl`` or, with ``model`` (name or index), a package's."""
    data = _read(path)
    if data[:4] not in PDL_MAGICS:
        if model is not None:
            raise ConfigError(f"'{path}' is a single model, not a package; drop --model {model}")
        return _read_named(data, str(path), key)
    _, models = package_models(data, str(path))
    names = [n for n, _ in models]
    if model is None:
        if len(models) == 1:
            model = names[0]
        else:
            raise ConfigError(
                f"'{path}' is a package of {len(models)} models {names}; pick one with --model NAME"
            )
    pick = {n: b for n, b in models}.get(model)
    if pick is None and model.isdigit() and int(model) < len(models):
        model, pick = models[int(model)]
    if pick is None:
        raise ConfigError(f"'{path}' has no model '{model}'; it holds {names}")
    return _read_named(pick, f"{path} [model '{model}']", key)


def _read_named(data: bytes, source: str, key: bytes | None) -> EspdlModel:
    from espq.espdl.files import _decode_edl

    return _decode_edl(data, source, key)
