"""Inputs found by bench/fuzz_reader.py: each must decode or raise EspdlFormatError naming an offset."""

from __future__ import annotations

from pathlib import Path

import pytest

from espq import espdl
from espq.errors import EspdlFormatError

CRASHERS = sorted((Path(__file__).parent / "crashers").glob("*.espdl"))


@pytest.mark.parametrize("path", CRASHERS, ids=[p.stem for p in CRASHERS])
def test_fuzz_crasher_is_handled(path):
    try:
        espdl.read(path.read_bytes())
    except EspdlFormatError as exc:
        assert "offset" in str(exc)


def test_crashers_were_kept():
    assert len(CRASHERS) >= 2
