"""Target chips as data: rounding, per-channel support, bias/accumulator widths, layouts and op support.

``get_target("esp32p4")`` returns the frozen :class:`Target` record; every other part of espq asks the
record instead of comparing target names. :func:`check_model` classifies the nodes of a canonicalised
graph as quantized / float / unsupported before any work is done.
"""

from __future__ import annotations

from espq.targets.base import ExponentRule, Issue, OpSpec, QuantType, Rounding, Target
from espq.targets.check import CapabilityReport, NodeCapability, check_model
from espq.targets.ops_markdown import supported_ops_markdown
from espq.targets.ops_table import (
    EQUAL_EXPONENT_OPS,
    NONNEGATIVE_SHIFT_OPS,
    OP_TABLE,
)
from espq.targets.registry import FAMILY_TARGETS, TARGETS, get_target

__all__ = [
    "CapabilityReport",
    "NodeCapability",
    "check_model",
    "EQUAL_EXPONENT_OPS",
    "FAMILY_TARGETS",
    "NONNEGATIVE_SHIFT_OPS",
    "OP_TABLE",
    "TARGETS",
    "ExponentRule",
    "Issue",
    "OpSpec",
    "QuantType",
    "Rounding",
    "Target",
    "get_target",
    "supported_ops_markdown",
]
