"""Step "exponent_search": neighbouring exponents scored at the next computing op
(:mod:`espq.quant.exponent_search`)."""

from __future__ import annotations

import copy
from typing import ClassVar

from espq.quant.exponent_search import search_exponents
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, TENSOR_STATS, StepContext, register_step


@register_step
class ExponentSearch:
    """Refine calibrated activation and weight exponents among their neighbours (no options)."""

    name: ClassVar[str] = "exponent_search"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({TENSOR_STATS, CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 200

    def apply(self, context: StepContext) -> StepContext:
        """The context with a refined copy of the plan."""
        plan = copy.deepcopy(context.plan)
        search_exponents(
            context.skeleton, plan, context.graph, context.stats, context.target, context.batches
        )
        return context.evolve(plan=plan)
