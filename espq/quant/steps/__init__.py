"""Accuracy steps: the :class:`~espq.quant.steps.base.Step` protocol, its registry and the steps."""

# the steps register themselves on import (one line per step)
from espq.quant.steps import (  # noqa: F401
    bias_correction,
    equalization,
    exponent_search,
    lsq,
    output_search,
    reconstruction,
    tqt,
)
from espq.quant.steps.base import (
    ALWAYS,
    CALIBRATION_BATCHES,
    FLOAT_REFERENCE,
    GRAPH,
    IF_BETTER,
    KEEP_MARGIN,
    PLAN,
    STEPS,
    TENSOR_STATS,
    Step,
    StepContext,
    StepSpec,
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
    "KEEP_MARGIN",
    "PLAN",
    "STEPS",
    "TENSOR_STATS",
    "Step",
    "StepContext",
    "StepSpec",
    "keep_if_better",
    "make_step",
    "register_step",
    "required_statistics",
    "resolve_steps",
    "run_steps",
]
