"""Latency and memory estimate of an `.espdl` file given as a path or bytes (issue 19 item 4).

The model lives in :mod:`espq.targets.latency` (it works on an :class:`EspdlModel`); this wrapper only
reads the file first, for callers holding a path.
"""

from __future__ import annotations

import os

from espq.espdl.files import read
from espq.espdl.model import EspdlModel
from espq.targets.latency import LatencyEstimate
from espq.targets.latency import estimate as estimate_model


def estimate(model: EspdlModel | str | os.PathLike | bytes, target: str | None = None) -> LatencyEstimate:
    """:func:`espq.targets.latency.estimate` of an :class:`EspdlModel`, a `.espdl` path or its bytes."""
    return estimate_model(model if isinstance(model, EspdlModel) else read(model), target)


__all__ = ["estimate"]
