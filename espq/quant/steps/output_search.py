"""Step "output_search": activation exponents refined by the graph outputs' error
(:mod:`espq.quant.output_search`)."""

from __future__ import annotations

from typing import ClassVar

from espq.quant.bias_correction import MAX_ELEMENTS, stack_batches
from espq.quant.output_search import SEARCH_SAMPLES, search_output_exponents
from espq.quant.steps.base import (
    ALWAYS,
    CALIBRATION_BATCHES,
    FLOAT_REFERENCE,
    PLAN,
    StepContext,
    register_step,
)


@register_step
class OutputSearch:
    """Coordinate descent over activation groups on the first kept calibration samples (no options);
    nothing to do without kept batches (a re-applied plan)."""

    name: ClassVar[str] = "output_search"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES, FLOAT_REFERENCE})
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 300

    def apply(self, context: StepContext) -> StepContext:
        """The context with the searched plan (the given plan is not changed)."""
        if not context.batches:
            return context
        stacked = stack_batches(context.batches, MAX_ELEMENTS)
        feeds = {k: v[:SEARCH_SAMPLES].numpy() for k, v in stacked.items()}
        plan = search_output_exponents(context.graph, context.plan, context.target, feeds, context.progress)
        return context.evolve(plan=plan)
