"""The mutable state the lowering rewrites share: a graph copy plus per-tensor export facts.

* ``graph``: a copy of the quantized model's float IR (ONNX semantics, original layouts); every
  node carries its ``quant_type`` attribute ("S8" / "S16" / "F32").
* ``specs``: activation tensor -> the spec it is stored with (int exponent, bits).
* ``params``: initializer -> its spec (weights, biases, Clip bounds...), absent = not quantized.
* ``perms``: activation tensor -> permutation from exported axes to original axes (exported axis
  ``i`` holds original axis ``perm[i]``; absent = identity). Shapes in ``graph.values`` stay in the
  original layout; the builder permutes them (esp_ppq_facts.md §3.7 step 4).
* ``luts``: LUT initializers (name -> (int table, exponent)), created by the LUT rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from espq.ir import Graph, Node
from espq.ir.graph import TensorInfo
from espq.ir.spec import F32, QUANT_TYPE_OF_BITS, QuantPlan, TensorSpec
from espq.targets import Target

QUANT_TYPE = "quant_type"


@dataclass
class ExportState:
    """See the module docstring."""

    graph: Graph
    plan: QuantPlan
    target: Target
    specs: dict[str, TensorSpec] = field(default_factory=dict)
    params: dict[str, TensorSpec] = field(default_factory=dict)
    perms: dict[str, tuple[int, ...]] = field(default_factory=dict)
    luts: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)
    int16_lut_step: int = 32

    @classmethod
    def from_model(
        cls, graph: Graph, plan: QuantPlan, target: Target, int16_lut_step: int = 32
    ) -> ExportState:
        """A state over a copy of ``graph``; quant types come from ``plan.node_types`` (default F32)."""
        g = graph.copy()
        for node in g.nodes:
            node.attrs[QUANT_TYPE] = plan.node_types.get(node.name, F32)
        specs, params = {}, {}
        for name, spec in plan.tensors.items():
            (params if name in g.initializers else specs)[name] = spec
        return cls(g, plan, target, specs, params, {}, {}, int16_lut_step)

    # ------------------------------------------------------------------ queries
    def quant_type(self, node: Node) -> str:
        return node.attrs.get(QUANT_TYPE, F32)

    def is_activation(self, tensor: str) -> bool:
        return bool(tensor) and tensor not in self.graph.initializers

    def rank(self, tensor: str) -> int | None:
        shape = self.graph.shape(tensor)
        return None if shape is None else len(shape)

    def perm(self, tensor: str) -> tuple[int, ...]:
        """The tensor's export permutation (identity when none was set)."""
        p = self.perms.get(tensor)
        if p is not None:
            return p
        r = self.rank(tensor)
        return tuple(range(r or 0))

    def exported_shape(self, tensor: str) -> list[int] | None:
        shape = self.graph.shape(tensor)
        if shape is None:
            return None
        p = self.perm(tensor)
        return [int(shape[i]) for i in p] if len(p) == len(shape) else [int(d) for d in shape]

    def tensor_quant_type(self, tensor: str) -> str:
        """ "S8"/"S16" for a quantized activation, "F32" otherwise."""
        spec = self.specs.get(tensor)
        return QUANT_TYPE_OF_BITS.get(spec.bits, F32) if spec is not None else F32

    # ------------------------------------------------------------------ edits
    def new_tensor(self, base: str, like: str, spec: TensorSpec | None, dtype=None) -> str:
        """A fresh activation name with ``like``'s original shape/perm, stored with ``spec``."""
        name = self.graph.unique_name(base)
        info = self.graph.values.get(like)
        shape = self.graph.shape(like)
        dt = np.dtype(dtype) if dtype is not None else (info.dtype if info else np.dtype(np.float32))
        self.graph.values[name] = TensorInfo(dt, None if shape is None else tuple(shape))
        if spec is not None:
            self.specs[name] = spec
        if like in self.perms:
            self.perms[name] = self.perms[like]
        return name

    def new_initializer(self, base: str, value: np.ndarray) -> str:
        name = self.graph.unique_name(base)
        self.graph.initializers[name] = value
        return name

    def insert_before(self, consumer: Node, node: Node) -> Node:
        """Insert ``node`` right before ``consumer`` in the node list."""
        return self.graph.add_node(node, self.graph.nodes.index(consumer))

    def rename(self, old: str, new: str) -> None:
        """Rename a tensor in the graph and in the export dictionaries."""
        self.graph.rename_tensor(old, new)
        for d in (self.specs, self.perms):
            if old in d:
                d[new] = d.pop(old)
