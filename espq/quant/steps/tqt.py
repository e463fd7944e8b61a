"""Step "tqt": trained quantization thresholds per block (:mod:`espq.quant.finetune.tqt`).

Options are ESP-PPQ's ``TQTSetting`` fields with its defaults (``interested_layers``, ``steps`` 500,
``lr`` 1e-5, ``block_size`` 4, ``is_scale_trainable``, ``gamma``, ``int_lambda``, ``collecting_device``)
plus ``block_inputs`` ("quantized" | "float"). Order 450: after bias correction (400), as ESP-PPQ's
zoo recipes run bias correction and then TQT; the trained biases are kept as they are.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from espq.quant.finetune.tqt import TQTOptions, tqt_optimize
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, StepContext, register_step


@register_step
class TQT:
    """Fine-tune weights and exponents block by block on the kept calibration batches."""

    name: ClassVar[str] = "tqt"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS  # blocks that do not improve are rolled back one by one
    order: ClassVar[int] = 450

    def __init__(self, **options: Any):
        self.options = TQTOptions(**options)
        self.options.validate()
        #: what the last :meth:`apply` did (:class:`espq.quant.finetune.TQTResult`)
        self.result = None

    def apply(self, context: StepContext) -> StepContext:
        """The context with the fine-tuned copies of the graph and the plan."""
        result = tqt_optimize(
            context.graph,
            context.plan,
            context.target,
            context.batches,
            float_graph=context.float_graph,
            options=self.options,
            progress=context.progress,
        )
        self.result = result
        return context.evolve(graph=result.graph, plan=result.plan)

    def __repr__(self) -> str:
        return f"TQT({asdict(self.options)})"
