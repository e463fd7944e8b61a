"""Step "tqt": trained quantization thresholds per block (:mod:`espq.quant.finetune.tqt`).

Options are ESP-PPQ's ``TQTSetting`` fields with its defaults (``interested_layers``, ``steps`` 500,
``lr`` 1e-5, ``block_size`` 4, ``is_scale_trainable``, ``gamma``, ``int_lambda``, ``collecting_device``)
plus ``block_inputs`` ("quantized" | "float") and ``holdout``: with ``holdout=k`` (> 0) the last ``k``
kept calibration batches are held aside, TQT trains on the others, and its result is kept only when it
lowers the output noise-to-signal ratio against the float model on the held-aside batches by
:data:`~espq.quant.steps.KEEP_MARGIN` (:func:`~espq.quant.steps.keep_if_better`); otherwise the step
leaves the model as calibrated. Order 450: after bias correction (400), as ESP-PPQ's zoo recipes run
bias correction and then TQT; the trained biases are kept as they are.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, ClassVar

import numpy as np
import torch

from espq.errors import ConfigError
from espq.quant.finetune.tqt import TQTOptions, tqt_optimize
from espq.quant.metrics import output_error
from espq.quant.steps.base import (
    ALWAYS,
    CALIBRATION_BATCHES,
    PLAN,
    StepContext,
    keep_if_better,
    register_step,
)
from espq.sim.fakequant import FakeQuantSim
from espq.sim.float import run_float


@register_step
class TQT:
    """Fine-tune weights and exponents block by block on the kept calibration batches."""

    name: ClassVar[str] = "tqt"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
    keep: ClassVar[str] = ALWAYS  # blocks that do not improve are rolled back one by one (and see holdout)
    order: ClassVar[int] = 450

    def __init__(self, holdout: int = 0, **options: Any):
        if not isinstance(holdout, int) or holdout < 0:
            raise ConfigError(f"TQT holdout must be an integer >= 0 (held-aside batches), got {holdout!r}")
        self.holdout = holdout
        self.options = TQTOptions(**options)
        self.options.validate()
        #: what the last :meth:`apply` did (:class:`espq.quant.finetune.TQTResult`)
        self.result = None
        #: with ``holdout``: whether the last result was kept (output error on the held-aside batches)
        self.kept: bool | None = None

    def apply(self, context: StepContext) -> StepContext:
        """The context with the fine-tuned copies of the graph and the plan."""
        batches = list(context.batches)
        held = batches[len(batches) - self.holdout :] if self.holdout else []
        train = batches[: len(batches) - len(held)]
        if self.holdout and (not train or not held):
            raise ConfigError(
                f"TQT holdout={self.holdout} needs more kept calibration batches than that "
                f"(got {len(batches)})"
            )
        result = tqt_optimize(
            context.graph,
            context.plan,
            context.target,
            train,
            float_graph=context.float_graph,
            options=self.options,
            progress=context.progress,
        )
        self.result = result
        after = context.evolve(graph=result.graph, plan=result.plan)
        if not held:
            return after
        chosen = keep_if_better(context, after, _held_out_error(context, held))
        self.kept = chosen is after
        return chosen

    def __repr__(self) -> str:
        return f"TQT(holdout={self.holdout}, {asdict(self.options)})"


def _held_out_error(context: StepContext, held: list[dict[str, np.ndarray]]):
    """Output noise-to-signal ratio of a context's model against the float model on ``held``."""
    reference = context.float_graph or context.graph
    feeds = {k: np.concatenate([np.asarray(b[k]) for b in held]) for k in held[0]}
    want = run_float(reference, feeds)

    def error(ctx: StepContext) -> float:
        sim = FakeQuantSim(ctx.graph, ctx.plan, ctx.target)
        with torch.no_grad():
            out = sim.run_torch({k: torch.as_tensor(v) for k, v in feeds.items()}, outputs=list(want))
        return output_error({k: v.float().numpy() for k, v in out.items()}, want)

    return error
