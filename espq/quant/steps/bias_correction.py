"""Step "bias_correction": espq's empirical bias correction (:mod:`espq.quant.bias_correction`), or with
``block_size`` ESP-PPQ's block bias correction (:mod:`espq.quant.finetune.block_bias`).

Options: ``block_size`` (``None``, the default: espq's layer-by-layer correction; an integer: ESP-PPQ's
``bias_correct_setting`` meaning, blocks of at most that many computing ops), and with it ``steps``
(calibration batches used, ESP-PPQ's default 32), ``interested_layers`` (only blocks holding these ops)
and ``collecting_device``. ESP-PPQ's ``bias_correct=True`` maps onto the block variant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from espq.errors import ConfigError
from espq.quant.bias_correction import correct_biases
from espq.quant.finetune.block_bias import block_bias_correction
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, StepContext, register_step


@register_step
class BiasCorrection:
    """Remove each quantized Conv/Gemm's mean output error on the kept calibration batches."""

    name: ClassVar[str] = "bias_correction"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 400

    def __init__(
        self,
        block_size: int | None = None,
        steps: int = 32,
        interested_layers: Sequence[str] = (),
        collecting_device: str = "cpu",
    ):
        if block_size is not None and (block_size < 1 or steps < 1):
            raise ConfigError(
                f"bias correction needs block_size >= 1 and steps >= 1 (got {block_size}, {steps})"
            )
        if block_size is None and (interested_layers or steps != 32):
            raise ConfigError(
                "bias correction: steps/interested_layers need block_size (ESP-PPQ's block bias correction)"
            )
        self.block_size = block_size
        self.steps = steps
        self.interested_layers = tuple(interested_layers)
        self.collecting_device = collecting_device
        #: the block variant's last result (:class:`espq.quant.finetune.TQTResult`), else None
        self.result = None

    def apply(self, context: StepContext) -> StepContext:
        """The context with a copy of the graph holding the corrected biases."""
        if self.block_size is not None:
            self.result = block_bias_correction(
                context.graph,
                context.plan,
                context.target,
                context.batches,
                float_graph=context.float_graph,
                block_size=self.block_size,
                steps=self.steps,
                interested_layers=self.interested_layers,
                collecting=self.collecting_device,
                progress=context.progress,
            )
            return context.evolve(graph=self.result.graph, plan=self.result.plan)
        graph = context.graph.copy()  # correct_biases replaces bias arrays, never writes into them
        correct_biases(graph, context.plan, context.target, context.batches)
        return context.evolve(graph=graph)
