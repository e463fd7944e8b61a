"""Step "equalization": layerwise equalization of the float graph (:mod:`espq.quant.equalization`)."""

from __future__ import annotations

from typing import Any, ClassVar

from espq.quant.equalization import EqualizationSetting, equalize
from espq.quant.steps.base import ALWAYS, GRAPH, StepContext, register_step


@register_step
class Equalization:
    """Cross-layer equalization before planning; options are :class:`EqualizationSetting`'s fields."""

    name: ClassVar[str] = "equalization"
    stage: ClassVar[str] = GRAPH
    needs: ClassVar[frozenset[str]] = frozenset()
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 100

    def __init__(self, **options: Any) -> None:
        self.setting = EqualizationSetting(**options)
        self.setting.validate()

    def apply(self, context: StepContext) -> StepContext:
        """The context with an equalized copy of the graph."""
        graph = context.graph.copy()  # equalize replaces arrays, the copy's dict holds the new ones
        equalize(graph, self.setting)
        return context.evolve(graph=graph)
