"""Step "bias_correction": empirical bias correction (:mod:`espq.quant.bias_correction`)."""

from __future__ import annotations

from typing import ClassVar

from espq.quant.bias_correction import correct_biases
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, StepContext, register_step


@register_step
class BiasCorrection:
    """Remove each quantized Conv/Gemm's mean output error on the kept calibration batches (no options)."""

    name: ClassVar[str] = "bias_correction"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 400

    def apply(self, context: StepContext) -> StepContext:
        """The context with a copy of the graph holding the corrected biases."""
        graph = context.graph.copy()  # correct_biases replaces bias arrays, never writes into them
        correct_biases(graph, context.plan, context.target, context.batches)
        return context.evolve(graph=graph)
