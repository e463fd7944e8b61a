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


class CalibrationError(InputDataError):
    """The calibration data cannot calibrate the model: all-zero, constant or wrongly scaled inputs, or
    activation ranges no power-of-two exponent of ESP-DL can represent."""


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


class InvalidFileError(ValidationError):
    """A `.espdl` model loaded to run or inspect breaks ESP-DL invariants; one line: the first violation
    and how many more (``violations`` lists them all)."""

    def __init__(self, violations: list[str], what: str = "model"):
        self.violations = list(violations)
        more = len(self.violations) - 1
        tail = f" (+{more} more violation(s); espq.espdl.validate.violations() lists them)" if more else ""
        EspqError.__init__(self, f"{what} is not a valid ESP-DL model: {self.violations[0]}{tail}")
