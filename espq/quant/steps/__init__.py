"""Accuracy steps: the :class:`~espq.quant.steps.base.Step` protocol, its registry and the steps."""

from espq.quant.steps.base import (
    ALWAYS,
    CALIBRATION_BATCHES,
    FLOAT_REFERENCE,
    GRAPH,
    IF_BETTER,
    PLAN,
    STEPS,
    TENSOR_STATS,
    Step,
    StepContext,
    keep_if_better,
    make_step,
    register_step,
    required_statistics,
    resolve_steps,
    run_steps,
)

__all__ = [
    "ALWAYS",
    "CALIBRATION_BATCHES",
    "FLOAT_REFERENCE",
    "GRAPH",
    "IF_BETTER",
    "PLAN",
    "STEPS",
    "TENSOR_STATS",
    "Step",
    "StepContext",
    "keep_if_better",
    "make_step",
    "register_step",
    "required_statistics",
    "resolve_steps",
    "run_steps",
]
