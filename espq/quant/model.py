"""The result of quantization: graph + plan + target, runnable in float and fake-quant."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from espq.ir import Graph
from espq.quant.spec import QuantPlan
from espq.targets import CapabilityReport, Target


class QuantizedModel:
    """A quantized model: ``graph`` (canonical float IR), ``plan`` (every tensor's spec), ``target``.

    ``run`` executes the fake-quant simulation, ``run_float`` the float model; both take the same input
    conventions as :func:`espq.run_float` and return numpy arrays by tensor name.
    """

    def __init__(
        self,
        graph: Graph,
        plan: QuantPlan,
        target: Target,
        capability: CapabilityReport | None = None,
        stats: dict | None = None,
    ):
        self.graph = graph
        self.plan = plan
        self.target = target
        self.capability = capability
        self.stats = stats or {}
        self._sim = None
        self.report = None  # the analysis report, once computed

    @property
    def sim(self):
        """The fake-quant simulator (built on first use)."""
        if self._sim is None:
            from espq.sim.fakequant import FakeQuantSim

            self._sim = FakeQuantSim(self.graph, self.plan, self.target)
        return self._sim

    def run(self, inputs: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Fake-quant inference; ``outputs`` may name intermediate tensors."""
        from espq.sim.float import prepare_inputs

        feeds = prepare_inputs(self.graph, inputs)
        with torch.no_grad():
            res = self.sim.run_torch(feeds, outputs)
        return {k: v.detach().cpu().numpy() for k, v in res.items()}

    def run_float(self, inputs: Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Float inference of the same (canonicalised) graph."""
        from espq.sim.float import run_float

        return run_float(self.graph, inputs, outputs=outputs)

    def save_plan(self, path: str | Path) -> None:
        """Write the plan as JSON; ``espq.quantize(..., plan=path)`` re-applies it without calibrating."""
        self.plan.save(path)

    def __repr__(self) -> str:
        n16 = len(self.plan.int16_nodes())
        return (
            f"QuantizedModel({self.graph.name!r}, target={self.target.name}, bits={self.plan.bits}, "
            f"{len(self.graph.nodes)} nodes, {n16} int16 node(s))"
        )
