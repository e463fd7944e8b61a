"""Layer-wise error with ESP-PPQ's meaning: only one op quantized, error measured at the graph outputs.

ESP-PPQ (esp_ppq_facts.md §5.3) runs, for every op and every batch, the whole float model and the whole
model with that op quantized: 2 × ops × batches forward passes. espq computes the same numbers with
less work (peers.md §4c):

* the float model runs once per batch and every activation is kept;
* for each op, only the op itself (quantized, on its cached float inputs) and the subgraph downstream of
  it are re-run; tensors the subgraph reads from elsewhere come from the cache;
* graph outputs the op cannot reach keep their float value (error 0), and are still counted in the mean
  over outputs as ESP-PPQ counts them;
* Relus after a re-computed Conv run in place (:mod:`espq.analysis.fastpath`; same values);
* the parameters the subgraphs read are converted to torch once (4-D Conv weights in the channels-last
  layout the Conv kernel runs in) and fed as subgraph inputs, instead of once per op and batch;
* when the quantized op's outputs equal the float ones bit for bit (e.g. weights already on the int8 grid
  and no own input/output rounding, as for a Conv with a fused Relu inside the network), the downstream
  result is the float one and is not recomputed.

The value per op is ESP-PPQ's: the batch-size-weighted mean over all graph outputs and batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from espq.analysis.fastpath import downstream_kernels
from espq.analysis.metrics import Recorder
from espq.analysis.ops import QuantOpEvaluator
from espq.ir import Graph, Node
from espq.sim.float.executor import run_graph
from espq.sim.float.registry import numpy_to_torch


@dataclass
class Downstream:
    """The subgraph to re-run after ``op``: its nodes as a graph whose inputs are ``op``'s outputs plus
    the cached tensors it reads (``external``), and whose outputs are the graph outputs it reaches."""

    op: Node
    graph: Graph
    fed_outputs: list[str]
    external: list[str]
    params: list[str]
    kernels: dict


def downstream_of(graph: Graph, op: Node) -> Downstream:
    """Nodes reachable from ``op``'s outputs, in topological order, wrapped as a runnable graph."""
    start = graph.nodes.index(op)
    reach = {o for o in op.outputs if o}
    nodes: list[Node] = []
    for node in graph.nodes[start + 1 :]:
        if any(i in reach for i in node.inputs if i):
            nodes.append(node)
            reach.update(o for o in node.outputs if o)
    produced = {o for n in nodes for o in n.outputs if o}
    read = {i for n in nodes for i in n.inputs if i}
    fed = [o for o in op.outputs if o and (o in read or o in graph.outputs)]
    external: list[str] = []
    params: list[str] = []
    for n in nodes:
        for i in n.inputs:
            if not i or i in produced or i in fed or i in external or i in params:
                continue
            (params if i in graph.initializers else external).append(i)
    outputs = [o for o in graph.outputs if o in reach]
    sub = Graph(
        nodes,
        values=graph.values,
        inputs=fed + external + params,
        outputs=outputs,
        name=f"{graph.name}/after/{op.name}",
        opset=graph.opset,
    )
    return Downstream(op, sub, fed, external, params, downstream_kernels(graph, op, nodes))


def torch_params(graph: Graph, names: set[str]) -> dict[str, torch.Tensor]:
    """The initializers ``names`` as torch tensors, as the float executor converts them; 4-D Conv weights
    in channels-last order, which the 2-D Conv kernel otherwise converts them to on every call."""
    conv_weights = {n.inputs[1] for n in graph.nodes if n.op_type == "Conv" and len(n.inputs) > 1}
    out = {}
    for name in names:
        t = numpy_to_torch(graph.initializers[name])
        if name in conv_weights and t.ndim == 4 and t.is_floating_point():
            t = t.contiguous(memory_format=torch.channels_last)
        out[name] = t
    return out


class LayerwisePass:
    """ESP-PPQ layer-wise error of every op in ``ops`` from cached float activations."""

    def __init__(self, graph: Graph, evaluator: QuantOpEvaluator, ops: list[Node]):
        self.graph = graph
        self.evaluator = evaluator
        self.plans = [downstream_of(graph, op) for op in ops]
        self.params = torch_params(graph, {p for plan in self.plans for p in plan.params})
        self.recorders = {op.name: Recorder() for op in ops}
        self.unperturbed: dict[str, int] = {op.name: 0 for op in ops}  # batches skipped per op

    def run_op(self, plan: Downstream, cache: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Graph outputs with only ``plan.op`` quantized (outputs it cannot reach are the cached float)."""
        op = plan.op
        args = [None if (not i or i in self.graph.initializers) else cache[i] for i in op.inputs]
        q = self.evaluator.evaluate(op, args, own_inputs="active")
        feeds = {o: q[op.outputs.index(o)] for o in plan.fed_outputs}
        if all(torch.equal(t, cache[o]) for o, t in feeds.items()):
            self.unperturbed[op.name] += 1
            return {o: cache[o] for o in self.graph.outputs}
        feeds.update({e: cache[e] for e in plan.external})
        feeds.update({p: self.params[p] for p in plan.params})
        result = run_graph(plan.graph, feeds, list(plan.graph.outputs), kernels=plan.kernels)
        return {o: result.get(o, cache[o]) for o in self.graph.outputs}

    def run(self, cache: Mapping[str, torch.Tensor], progress=None) -> None:
        """Update every op's recorder for one batch; ``cache`` holds every float tensor of the batch."""
        for plan in self.plans:
            outputs = self.run_op(plan, cache)
            rec = self.recorders[plan.op.name]
            for name in self.graph.outputs:
                rec.update(outputs[name], cache[name])
            if progress is not None:
                progress.update(1)
