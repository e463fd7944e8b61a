"""AutoQuant: search espq's quantization knobs for the best deployable model within budgets.

``espq.autoquant(model, calib, target, ...)`` is :func:`espq.autoquant.api.autoquant` (this package is
callable, so its modules stay importable as ``espq.autoquant.search`` etc.). Pieces: :mod:`.space`
(configurations), :mod:`.runner` (one run), :mod:`.backends` (serial / process pool / Ray),
:mod:`.search` (staged successive halving), :mod:`.store` (run directory, resume).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from espq.autoquant.api import AutoQuantResult, autoquant
from espq.autoquant.space import Config, default_space


class _CallableModule(types.ModuleType):
    """Lets ``espq.autoquant(...)`` call :func:`autoquant` while the package keeps its submodules."""

    def __call__(self, *args: Any, **kwargs: Any) -> AutoQuantResult:
        return autoquant(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["AutoQuantResult", "Config", "autoquant", "default_space"]
