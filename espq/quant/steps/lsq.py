"""Step "lsq": ESP-PPQ's LSQ (learned step size) on power-of-two targets, i.e. weight-only block tuning.

ESP-PPQ's ``LearnedStepSizePass`` trains a scale only when its policy is not POWER_OF_2 (its
``LSQDelegator`` checks), and every ESP-DL target is power-of-two, so on ESP-DL LSQ trains the weights
(and biases) of each block's computing ops on the block-output MSE, with roll-back: that is TQT with
``is_scale_trainable=False`` (:mod:`espq.quant.finetune.tqt`), which this step runs, with a warning.
Options are ESP-PPQ's ``LSQSetting`` fields with its defaults (``interested_layers``, ``lr`` 1e-5,
``collecting_device`` "cuda" (the CPU, with a warning, without CUDA), ``steps`` 500,
``is_scale_trainable`` (no effect: see above), ``gamma`` 0 (TQT's weight regulariser), ``block_size`` 4).
Order 440: before TQT (450), as in ESP-PPQ's pipeline.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

from espq.quant.finetune.blocks import collecting_device
from espq.quant.finetune.tqt import TQTOptions, tqt_optimize
from espq.quant.steps.base import ALWAYS, CALIBRATION_BATCHES, PLAN, StepContext, register_step

POT_WARNING = (
    "lsq_optimization on a power-of-two ESP-DL target tunes weights only (ESP-PPQ's LSQ does not train "
    "power-of-two scales); tqt_optimization=True also trains the exponents"
)


@dataclass
class LSQOptions:
    """ESP-PPQ's ``LSQSetting`` fields with its defaults."""

    interested_layers: Sequence[str] = ()
    lr: float = 1e-5
    collecting_device: str = "cuda"
    steps: int = 500
    is_scale_trainable: bool = True
    gamma: float = 0.0
    block_size: int = 4

    def tqt(self, device: str) -> TQTOptions:
        """The TQT options LSQ runs with on a power-of-two target (on ``device``)."""
        return TQTOptions(
            interested_layers=tuple(self.interested_layers),
            steps=self.steps,
            lr=self.lr,
            block_size=self.block_size,
            is_scale_trainable=False,
            gamma=self.gamma,
            collecting_device=device,
        )


@register_step
class LSQ:
    """Tune each block's weights on the kept calibration batches (ESP-PPQ's LSQ on power-of-two scales)."""

    name: ClassVar[str] = "lsq"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS
    order: ClassVar[int] = 440

    def __init__(self, **options):
        self.options = LSQOptions(**options)
        self.options.tqt("cpu").validate()
        #: what the last :meth:`apply` did (:class:`espq.quant.finetune.TQTResult`)
        self.result = None

    def apply(self, context: StepContext) -> StepContext:
        """The context with the weight-tuned copies of the graph and the plan."""
        warnings.warn(POT_WARNING, UserWarning, stacklevel=2)
        device = str(collecting_device(self.options.collecting_device, "lsq_optimization"))
        result = tqt_optimize(
            context.graph,
            context.plan,
            context.target,
            context.batches,
            float_graph=context.float_graph,
            options=self.options.tqt(device),
            progress=context.progress,
            desc="LSQ",
        )
        self.result = result
        return context.evolve(graph=result.graph, plan=result.plan)

    def __repr__(self) -> str:
        return f"LSQ({asdict(self.options)})"
