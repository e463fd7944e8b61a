"""espq.testing.wheels: the cached wheel helper, offline (a fake wheel in a temporary cache)."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from espq.testing import wheels


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ESPQ_REALMODEL_CACHE", str(tmp_path))
    with zipfile.ZipFile(tmp_path / "Some_Pkg-1.2.0-py3-none-any.whl", "w") as z:
        z.writestr("some_pkg/data/model.onnx", b"\x08\x07model")
        z.writestr("some_pkg/__init__.py", "VALUE = 41\n")
    return tmp_path


def _no_download(monkeypatch):
    calls = []

    def fail(cmd, **kwargs):
        calls.append(cmd)
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(wheels.subprocess, "run", fail)
    return calls


def test_cached_wheel_matches_normalized_name_and_version(cache, monkeypatch):
    calls = _no_download(monkeypatch)
    assert wheels.cached_wheel("some-pkg==1.2.0").name == "Some_Pkg-1.2.0-py3-none-any.whl"
    assert wheels.cached_wheel("some.pkg").name == "Some_Pkg-1.2.0-py3-none-any.whl"
    assert calls == []  # found in the cache: no pip call
    assert wheels.cached_wheel("some-pkg==1.2") is None  # 1.2 is not 1.2.0
    assert len(calls) == 1 and calls[0][-3:] == ["some-pkg==1.2", "-d", str(cache)]
    assert "--no-deps" in calls[0]


def test_member_and_extraction(cache, monkeypatch):
    _no_download(monkeypatch)
    assert wheels.wheel_member("some-pkg==1.2.0", "some_pkg/data/model.onnx") == b"\x08\x07model"
    assert wheels.wheel_member("some-pkg==1.2.0", "some_pkg/missing.onnx") is None
    root = wheels.extracted_wheel("some-pkg==1.2.0")
    assert (root / "some_pkg" / "__init__.py").read_text() == "VALUE = 41\n"
    assert wheels.extracted_wheel("some-pkg==1.2.0") == root  # unpacked once


def test_unreachable_registry_gives_none(cache, monkeypatch):
    _no_download(monkeypatch)
    assert wheels.cached_wheel("absent-pkg==0.1") is None
    assert wheels.wheel_member("absent-pkg==0.1", "x") is None
    assert wheels.extracted_wheel("absent-pkg==0.1") is None
