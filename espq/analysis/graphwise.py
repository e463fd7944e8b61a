"""Graph-wise error: every measured op's output, fully quantized model against fully float model.

One quantized pass per batch captures all ops at once and compares each with the float value kept from
the float pass over the same batch, so the error accumulates from the graph input (esp_ppq_facts.md
§5.2). ESP-PPQ samples 4096 elements per sample; espq compares whole tensors. A Conv/Gemm/MatMul
with a fused Relu is measured before the Relu's rounding, as in ESP-PPQ (see :mod:`espq.analysis.ops`);
that Relu then runs in place (:mod:`espq.analysis.fastpath`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from espq.analysis.fastpath import quantized_kernels
from espq.analysis.metrics import Recorder
from espq.ir import Node
from espq.sim.fakequant import FakeQuantSim, fake_quant
from espq.sim.float.executor import run_graph


def quantized_feeds(sim: FakeQuantSim, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Graph inputs rounded to their specs, as :meth:`FakeQuantSim.run_torch` does."""
    out = {}
    for name, value in feeds.items():
        spec = sim.plan.tensors.get(name)
        out[name] = fake_quant(value.float(), spec, sim.rounding) if spec is not None else value
    return out


class GraphwisePass:
    """Accumulated error of every op in ``ops`` and of every float graph output (one quantized pass per
    batch). ``recorders``: op name -> its recorder; ``output_recorders``: graph output name -> its
    recorder (the model's end-to-end error, whatever node produces the output)."""

    def __init__(self, sim: FakeQuantSim, ops: list[Node]):
        self.sim = sim
        self.op_of_output = {op.outputs[0]: op.name for op in ops}
        self.unrounded = {op.outputs[0] for op in ops if op.name in sim.plan.fused}
        self.recorders = {op.name: Recorder() for op in ops}
        self.output_recorders = {name: Recorder() for name in sim.graph.outputs}
        self.kernels = quantized_kernels(sim.graph, sim.kernels)

    @property
    def float_tensors(self) -> list[str]:
        """Float tensors the pass compares against (to keep from the float pass)."""
        return list(self.op_of_output) + list(self.output_recorders)

    def run(self, feeds: Mapping[str, torch.Tensor], float_values: Mapping[str, torch.Tensor]) -> None:
        """Run the quantized model on ``feeds``; compare with ``float_values`` (tensor name -> float)."""
        sim = self.sim

        def hook(node: Node, index: int, tensor: torch.Tensor) -> torch.Tensor:
            name = node.outputs[index]
            op = self.op_of_output.get(name)
            if op is not None and name in self.unrounded:
                self.recorders[op].update(tensor.float(), float_values[name])
            out = sim.round_output(node, index, tensor)
            if op is not None and name not in self.unrounded:
                self.recorders[op].update(out, float_values[name])
            return out

        outs = run_graph(
            sim.graph, quantized_feeds(sim, feeds), list(sim.graph.outputs), hook=hook, kernels=self.kernels
        )
        for name, q in outs.items():
            ref = float_values.get(name)
            if ref is not None and q.is_floating_point() and ref.is_floating_point():
                self.output_recorders[name].update(q.float(), ref.float())
