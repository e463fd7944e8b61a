"""Cached PyPI wheels for real-model tests and benchmarks (models shipped inside packages, never hubs).

A wheel is fetched once with ``pip download --no-deps`` into :func:`cache_dir`
(``$ESPQ_REALMODEL_CACHE``, default ``~/.cache/espq-realmodels``) and read from there afterwards::

    data = wheel_member("openwakeword==0.5.1", "openwakeword/resources/models/melspectrogram.onnx")
    root = extracted_wheel("mtcnn==1.0.0")  # unpacked once; put it on sys.path to import its code

Every function returns ``None`` when the wheel is neither cached nor downloadable (no network, no
registry), so a test can skip cleanly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

#: seconds one ``pip download`` may take
DOWNLOAD_TIMEOUT = 300


def cache_dir() -> Path:
    """``$ESPQ_REALMODEL_CACHE`` or ``~/.cache/espq-realmodels`` (created on first use)."""
    return Path(os.environ.get("ESPQ_REALMODEL_CACHE", "~/.cache/espq-realmodels")).expanduser()


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _find(requirement: str, folder: Path) -> Path | None:
    name, _, version = requirement.partition("==")
    for path in sorted(folder.glob("*.whl")):
        dist, _, rest = path.name.partition("-")
        if _normalized(dist) == _normalized(name) and (not version or rest.startswith(version + "-")):
            return path
    return None


def cached_wheel(requirement: str) -> Path | None:
    """The wheel of ``requirement`` (``"name==version"``; pin it), downloaded on the first call."""
    folder = cache_dir()
    found = _find(requirement, folder) if folder.is_dir() else None
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    try:
        subprocess.run(
            [*cmd, requirement, "-d", str(folder)],
            capture_output=True,
            timeout=DOWNLOAD_TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return _find(requirement, folder)


def wheel_member(requirement: str, member: str) -> bytes | None:
    """The bytes of file ``member`` inside the wheel, None when the wheel or the file is missing."""
    wheel = cached_wheel(requirement)
    if wheel is None:
        return None
    with zipfile.ZipFile(wheel) as z:
        try:
            return z.read(member)
        except KeyError:
            return None


def extracted_wheel(requirement: str) -> Path | None:
    """The wheel unpacked under the cache (once; a folder named after the wheel), None when missing."""
    wheel = cached_wheel(requirement)
    if wheel is None:
        return None
    target = wheel.with_suffix("")
    marker = target / ".complete"
    if not marker.exists():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(target)
        marker.touch()
    return target
