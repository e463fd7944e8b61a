"""Float kernels the analysis substitutes for speed; results are the registry kernels' results.

* ``Relu`` in place, for re-runs of a downstream subgraph only, on tensors that this run produced with
  a Conv/Gemm/MatMul and that nothing else reads (never on cached float activations).
"""

from __future__ import annotations

import torch

from espq.ir import Graph, Node
from espq.sim.float.registry import KERNELS, KernelFn

FRESH_PRODUCERS = ("Conv", "Gemm", "MatMul")


def downstream_kernels(graph: Graph, op: Node, nodes: list[Node]) -> dict[str, KernelFn]:
    """Overrides for re-running ``nodes`` (downstream of ``op``) in ``graph``."""
    inside = {n.name for n in nodes} | {op.name}
    inplace = set()
    for n in nodes:
        if n.op_type != "Relu" or not n.inputs:
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
            inplace.add(n.name)
    base_relu = KERNELS["Relu"]

    def relu(node: Node, inputs: list) -> list:
        x = inputs[0]
        if node.name in inplace and x is not None and x.is_floating_point():
            return [torch.relu_(x)]
        return base_relu(node, inputs)

    return {"Relu": relu}
