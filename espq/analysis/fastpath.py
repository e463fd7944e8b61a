"""Float kernels the analysis substitutes for speed; results are the registry kernels' results.

* ``Relu`` in place, on tensors that the same run produced with a Conv/Gemm/MatMul and that nothing
  else reads: in re-runs of a downstream subgraph (never on cached float activations) and in the
  graph-wise quantized pass (after the pass has compared the Conv's output).
"""

from __future__ import annotations

import torch

from espq.ir import Graph, Node
from espq.sim.float.registry import KERNELS, KernelFn

FRESH_PRODUCERS = ("Conv", "Gemm", "MatMul")


def fresh_relus(graph: Graph, nodes: list[Node], inside: set[str]) -> set[str]:
    """Names of the Relus in ``nodes`` whose input a node named in ``inside`` (a Conv/Gemm/MatMul) produces
    and that is read by nothing else: they may overwrite their input."""
    out = set()
    for n in nodes:
        if n.op_type != "Relu" or not n.inputs or not n.inputs[0]:
            continue
        src = n.inputs[0]
        prod = graph.producer(src)
        if (
            prod is not None
            and prod.name in inside
            and prod.op_type in FRESH_PRODUCERS
            and len(graph.consumers(src)) == 1
            and src not in graph.outputs
        ):
            out.add(n.name)
    return out


def inplace_relu(inplace: set[str], base: KernelFn) -> KernelFn:
    """A Relu kernel that runs in place for the nodes named in ``inplace`` and as ``base`` elsewhere."""

    def relu(node: Node, inputs: list) -> list:
        x = inputs[0]
        if node.name in inplace and x is not None and x.is_floating_point():
            return [torch.relu_(x)]
        return base(node, inputs)

    return relu


def downstream_kernels(graph: Graph, op: Node, nodes: list[Node]) -> dict[str, KernelFn]:
    """Overrides for re-running ``nodes`` (downstream of ``op``) in ``graph``."""
    inside = {n.name for n in nodes} | {op.name}
    return {"Relu": inplace_relu(fresh_relus(graph, nodes, inside), KERNELS["Relu"])}


def quantized_kernels(graph: Graph, kernels: dict[str, KernelFn]) -> dict[str, KernelFn]:
    """``kernels`` (a fake-quant simulator's table for ``graph``) with Relus in place where they may be;
    unchanged where the simulator has its own Relu kernel (int16 tables)."""
    if "Relu" in kernels:
        return kernels
    relus = fresh_relus(graph, graph.nodes, {n.name for n in graph.nodes})
    return {**kernels, "Relu": inplace_relu(relus, KERNELS["Relu"])} if relus else kernels
