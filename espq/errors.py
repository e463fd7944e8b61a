"""One exception family for every error espq raises on purpose.

Each message says *what* went wrong, *where* (file, node, tensor) and *how to fix it*.
"""

from __future__ import annotations


class EspqError(Exception):
    """Base class of every error espq raises deliberately."""


class ModelLoadError(EspqError):
    """A model file or object could not be read or converted to ONNX."""


class ShapeError(EspqError):
    """A tensor shape is unknown, dynamic where it must be static, or does not match."""


class UnsupportedOpError(EspqError):
    """An operator (or an attribute combination) is not supported where it is used."""


class MissingDependencyError(EspqError):
    """An optional dependency (an extra) is needed but not installed."""


class InputDataError(EspqError):
    """User-supplied data (inputs, calibration batches) is malformed: wrong shape, NaN, empty."""


class ConfigError(EspqError):
    """An argument or setting is invalid (unknown target, bad bit width, unknown node name...)."""


class EspdlFormatError(EspqError):
    """A `.espdl` file is corrupt, truncated or violates the format's rules."""


class ValidationError(EspqError):
    """A model breaks one or more ESP-DL invariants; the message lists every violation."""

    def __init__(self, violations: list[str], what: str = "model"):
        self.violations = list(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{len(self.violations)} violation(s) in {what}:\n{lines}")
