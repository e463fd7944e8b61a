"""Step "blockwise_reconstruction": learned weight rounding per block
(:mod:`espq.quant.finetune.reconstruct`).

Options are ESP-PPQ's ``BlockwiseReconstructionSetting`` fields with its defaults
(``interested_layers``, ``is_scale_trainable`` False, ``lr`` 1e-3, ``steps`` 5000, ``gamma`` 1.0,
``collecting_device`` "cuda" (the CPU, with a warning, when torch sees no CUDA device), ``block_size``
4) plus ``block_inputs``. Order 460: after TQT (450), as ESP-PPQ's pipeline runs TQT before blockwise
reconstruction.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

from espq.quant.finetune.reconstruct import ReconstructionOptions, reconstruct
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, StepContext, register_step


@register_step
class BlockwiseReconstruction:
    """Learn each block's weight rounding on the kept calibration batches (AdaRound)."""

    name: ClassVar[str] = "blockwise_reconstruction"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS  # blocks that do not improve are rolled back one by one
    order: ClassVar[int] = 460

    def __init__(self, **options: Any):
        self.options = ReconstructionOptions(**options)
        self.options.validate()
        #: what the last :meth:`apply` did (:class:`espq.quant.finetune.TQTResult`)
        self.result = None

    def apply(self, context: StepContext) -> StepContext:
        """The context with copies of the graph (rounded weights) and the plan."""
        result = reconstruct(
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
        return f"BlockwiseReconstruction({asdict(self.options)})"
