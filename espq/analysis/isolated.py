"""Isolated (local) error: each quantized op fed the float model's input, compared at its own output.

All ops are measured during the float pass itself: the float kernel of a measured op is wrapped so
that the same input tensors also go through the quantized op (every activation input rounded to the
spec the op sees, quantized parameters, output rounded), and the two outputs are compared on the spot
(peers.md §4a family 2, "shadow" comparison). Nothing upstream is quantized, so the value is the op's
own contribution, to be read beside the accumulated graph-wise error.
"""

from __future__ import annotations

import torch

from espq.analysis.metrics import Recorder
from espq.analysis.ops import QuantOpEvaluator
from espq.ir import Node
from espq.sim.float.registry import KERNELS, KernelFn


class IsolatedPass:
    """Local error of every op in ``ops``; install :meth:`kernels` in the float pass."""

    def __init__(self, evaluator: QuantOpEvaluator, ops: list[Node]):
        self.evaluator = evaluator
        self.recorders = {op.name: Recorder() for op in ops}
        self.op_types = sorted({op.op_type for op in ops})

    def kernels(self, base: dict[str, KernelFn] | None = None) -> dict[str, KernelFn]:
        """Kernel overrides for the float run (float result unchanged; comparison as a side effect);
        ``base`` holds the float kernels to wrap where they differ from the registry's."""
        base = base or {}

        def make(base: KernelFn) -> KernelFn:
            def kernel(node: Node, inputs: list) -> list:
                outs = base(node, inputs)
                rec = self.recorders.get(node.name)
                if rec is not None:
                    q = self.evaluator.evaluate(node, inputs, own_inputs="all")
                    rec.update(q[0], outs[0].float() if outs[0].dtype == torch.float64 else outs[0])
                return outs

            return kernel

        table = dict(base)
        table.update({op: make(base.get(op, KERNELS[op])) for op in self.op_types})
        return table
