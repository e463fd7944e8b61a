"""Which ops are analysed, and how one of them is evaluated quantized on given (float) inputs.

ESP-PPQ measures every quantized "computing op" (esp_ppq_facts.md §5.2): Conv, Gemm, MatMul,
ConvTranspose (a Conv after our canonicalisation), LSTM, GRU; the first output of each.

Quantizing "only that op" follows ESP-PPQ's tensor-quantization-config (TQC) states (§2.6, §5.3):

* the op's parameters (weights, bias) are always quantized;
* an activation input is quantized by the op itself only where its TQC is active: the input is a graph
  input, comes from a float (unquantized) producer, or needs a requantize step (another width or
  exponent than its producer's output, ``plan.requant``). Otherwise the TQC is OVERLAPPED by the
  producer's output TQC and, with the producer dequantized, the input stays float;
* the output is rounded to its spec, except for a Conv/Gemm/MatMul with a fused Relu: its output TQC
  is OVERLAPPED by the Relu's (QuantizeFusionPass, §2.6), so ESP-PPQ measures that op's pre-Relu output
  unrounded. The same holds in the graph-wise pass, where the Relu (not the op) rounds the value.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from espq.ir import Graph, Node
from espq.ir.op_facts import COMPUTING_OPS
from espq.ir.spec import F32
from espq.sim.fakequant import FakeQuantSim, fake_quant
from espq.sim.float.registry import numpy_to_torch


def measured_ops(graph: Graph, node_types: dict[str, str]) -> list[Node]:
    """Quantized computing ops of ``graph`` in topological order."""
    return [
        n
        for n in graph.nodes
        if n.op_type in COMPUTING_OPS and node_types.get(n.name, F32) != F32 and n.outputs and n.outputs[0]
    ]


class QuantOpEvaluator:
    """Evaluate one op of the model quantized, on inputs taken from the float model.

    ``own_inputs`` selects the activation inputs the op quantizes itself: ``"all"`` (isolated error: the
    op as it runs on the chip, fed the float input) or ``"active"`` (ESP-PPQ's layer-wise meaning, see
    the module docstring).
    """

    def __init__(self, graph: Graph, sim: FakeQuantSim):
        self.graph = graph
        self.sim = sim
        self.plan = sim.plan
        self.params = sim.graph.initializers  # parameters rounded to their specs (same names)
        self._param_cache: dict[str, torch.Tensor] = {}

    def is_fused_host(self, node: Node) -> bool:
        return node.name in self.plan.fused

    def active_inputs(self, node: Node) -> set[int]:
        """Activation inputs whose quantization belongs to ``node`` itself (ESP-PPQ TQC not OVERLAPPED)."""
        out = set()
        for i, src in enumerate(node.inputs):
            if not src or src in self.graph.initializers:
                continue
            producer = self.graph.producer(src)
            own = (
                producer is None
                or self.plan.node_types.get(producer.name, F32) == F32
                or f"{node.name}:{i}" in self.plan.requant
            )
            if own:
                out.add(i)
        return out

    def _param(self, node: Node, index: int) -> torch.Tensor:
        """Quantized parameter ``index`` of ``node`` as torch, converted once (a 4-D Conv weight in the
        channels-last order the Conv kernel would otherwise convert it to on every call)."""
        name = node.inputs[index]
        t = self._param_cache.get(name)
        if t is None:
            t = numpy_to_torch(self.params[name])
            if node.op_type == "Conv" and index == 1 and t.ndim == 4 and t.is_floating_point():
                t = t.contiguous(memory_format=torch.channels_last)
            self._param_cache[name] = t
        return t

    def evaluate(
        self, node: Node, inputs: Sequence[torch.Tensor | None], own_inputs: str = "all"
    ) -> list[torch.Tensor]:
        """Outputs of ``node`` run quantized on ``inputs`` (float activations; parameters are ignored and
        replaced by their quantized values)."""
        active = self.active_inputs(node) if own_inputs == "active" else None
        args: list[torch.Tensor | None] = []
        for i, (src, x) in enumerate(zip(node.inputs, inputs)):
            if src and src in self.graph.initializers:
                args.append(self._param(node, i))
                continue
            spec = self.plan.input_spec(node.name, i, src) if src else None
            quantize = spec is not None and x is not None and x.is_floating_point()
            if quantize and (active is None or i in active):
                x = fake_quant(x.float(), spec, self.sim.rounding)
            args.append(x)
        kernel = self.sim.kernel(node.op_type)
        outs = kernel(node, args)
        result = []
        for k, t in enumerate(outs):
            if k == 0 and self.is_fused_host(node):
                result.append(t.float() if t.dtype == torch.float64 else t)
            else:
                result.append(self.sim.round_output(node, k, t))
        return result
