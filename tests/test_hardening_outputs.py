"""Issue 14 findings 10 and 11: output file modes, the output set written together, option checks,
escaped node names, image channels."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.quant.model import QuantizedModel
from espq.utils import atomic_write_text


@pytest.fixture(scope="module")
def qm() -> QuantizedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32) for _ in range(2)]
    return espq.quantize(net.eval(), data, target="esp32p4", input_shape=[1, 3, 6, 6], progress=False)


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Set the process umask for one test; the old one is restored afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# --- finding 11a: modes follow the umask (were 0600 from mkstemp) ------------------------------------


def test_atomic_write_honours_umask(tmp_path: Path, umask) -> None:
    umask(0o022)
    atomic_write_text(tmp_path / "a.txt", "x")
    umask(0o027)
    atomic_write_text(tmp_path / "b.txt", "x")
    umask(0o022)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.txt") == 0o640
    assert os.umask(0o022) == 0o022  # the umask itself is left as it was


def test_export_files_0644_key_files_0600(qm: QuantizedModel, tmp_path: Path, umask) -> None:
    umask(0o022)
    out = tmp_path / "m.espdl"
    qm.export(out)
    assert {p.name: _mode(p) for p in sorted(tmp_path.iterdir())} == {
        "m.espdl": 0o644,
        "m.info": 0o644,
        "m.json": 0o644,
    }
    pytest.importorskip("cryptography")
    qm.export(tmp_path / "e.espdl", key="auto")
    assert _mode(tmp_path / "e.espdl") == 0o644
    assert _mode(tmp_path / "e.key") == 0o600
    assert _mode(tmp_path / "e_key.h") == 0o600
