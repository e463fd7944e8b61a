"""Empirical bias correction: remove each quantized layer's mean output error on calibration data.

One fake-quant pass over one batch of calibration inputs (up to ``MAX_ELEMENTS`` input values). At every
quantized Conv/Gemm with a bias, the layer also runs with its float weights and bias on the same
(quantized) input; the per-channel mean of the difference is the layer's own error (weight and bias
rounding, DFQ's bias-correction term measured instead of modelled). It is subtracted from the output
right away (later layers see corrected inputs) and from the layer's bias. Measuring against the float
*model* instead would also try to undo upstream clipping by shifting biases, which feeds back through
saturation (on the zoo MobileNetV2 it cost 28 points). The bias keeps its power-of-two exponent
(input + weight exponent): the new value is rounded to that grid when the model runs or is exported.

The corrected biases are written into ``graph.initializers``, so the model's float run includes them
(a shift of at most the weight rounding's mean effect).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from espq.ir import Graph, Node
from espq.ir.spec import F32, QuantPlan
from espq.targets import Target

MAX_ELEMENTS = 1 << 23  # input values used (e.g. 55 images at 224x224x3, 1024 CIFAR images)
CORRECTED_OPS = ("Conv", "Gemm")


def keep_batches(feeds: Iterator[dict[str, np.ndarray]], store: list, max_elements: int = MAX_ELEMENTS):
    """Yield ``feeds`` unchanged, appending them to ``store`` until ``max_elements`` input values are kept."""
    kept = 0
    for feed in feeds:
        if kept < max_elements:
            store.append(feed)
            kept += sum(int(np.asarray(v).size) for v in feed.values())
        yield feed


def stack_batches(batches: list[dict[str, np.ndarray]], max_elements: int) -> dict[str, torch.Tensor]:
    """One batch (torch tensors) of the first samples of ``batches``, up to ``max_elements`` input values."""
    names = list(batches[0])
    per_sample = sum(int(np.prod(batches[0][n].shape[1:])) for n in names)
    limit = max(1, max_elements // max(per_sample, 1))
    return {n: torch.as_tensor(np.concatenate([b[n] for b in batches])[:limit]) for n in names}


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    x = t.double()
    return x.mean(dim=0) if x.ndim == 1 else x.transpose(0, 1).reshape(x.shape[1], -1).mean(dim=1)


def _targets(graph: Graph, plan: QuantPlan) -> dict[str, Node]:
    out = {}
    for node in graph.nodes:
        if node.op_type not in CORRECTED_OPS or plan.node_types.get(node.name, F32) == F32:
            continue
        if len(node.inputs) > 2 and node.inputs[2] in graph.initializers:
            bias = graph.initializers[node.inputs[2]]
            shape = graph.shape(node.outputs[0])
            if shape is not None and len(shape) > 1 and bias.size == shape[1]:
                out[node.name] = node
    return out


def correct_biases(
    graph: Graph,
    plan: QuantPlan,
    target: Target,
    batches: list[dict[str, np.ndarray]],
    max_elements: int = MAX_ELEMENTS,
) -> dict[str, np.ndarray]:
    """Correct the biases of ``graph`` in place for ``plan``; returns the change per bias tensor."""
    from espq.sim.fakequant import FakeQuantSim

    targets = _targets(graph, plan)
    if not targets or not batches:
        return {}
    feeds = stack_batches(batches, max_elements)
    sim = FakeQuantSim(graph, plan, target)
    deltas: dict[str, np.ndarray] = {}

    def corrected(op_kernel):
        def run(node: Node, inputs: list) -> list:
            outs = op_kernel(node, inputs)
            if node.name not in targets:
                return outs
            ref_inputs = list(inputs)
            for i in (1, 2):
                value = np.asarray(graph.initializers[node.inputs[i]])
                ref_inputs[i] = torch.tensor(value, dtype=inputs[i].dtype)
            ref = op_kernel(node, ref_inputs)[0]
            delta = _channel_mean(outs[0]) - _channel_mean(ref)
            deltas[node.name] = delta.numpy()
            shape = [1, -1] + [1] * (outs[0].ndim - 2)
            return [outs[0] - delta.to(outs[0].dtype).reshape(shape), *outs[1:]]

        return run

    for op in CORRECTED_OPS:  # the simulator's kernels, wrapped to measure and correct
        sim.register_kernel(op, corrected(sim.kernel(op)))
    with torch.no_grad():
        sim.run_torch(feeds, outputs=list(graph.outputs))
    changes = {}
    for name, delta in deltas.items():
        bias_name = targets[name].inputs[2]
        bias = graph.initializers[bias_name]
        graph.initializers[bias_name] = (bias - delta.reshape(bias.shape)).astype(bias.dtype)
        changes[bias_name] = delta
    return changes


__all__ = ["correct_biases", "keep_batches", "stack_batches"]
