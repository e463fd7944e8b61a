"""A small, mutation-safe graph IR used by every stage of espq.

Tensors are referred to by name. A :class:`Graph` holds

* ``nodes``: the operators in topological order,
* ``initializers``: constant tensors as numpy arrays,
* ``values``: shape/dtype of every non-constant tensor (graph inputs, node outputs),
* ``inputs`` / ``outputs``: the graph's interface, by name.

Def-use lookups (:meth:`Graph.producer`, :meth:`Graph.consumers`) are rebuilt lazily after any
mutation made through the graph's methods, so passes may insert and delete nodes while iterating
over a snapshot (``list(graph.nodes)``).
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from espq.errors import ShapeError


@dataclass
class TensorInfo:
    """Static type of an activation tensor: element dtype and shape (``None`` when unknown)."""

    dtype: np.dtype
    shape: tuple[int, ...] | None

    def copy(self) -> TensorInfo:
        return TensorInfo(np.dtype(self.dtype), None if self.shape is None else tuple(self.shape))


@dataclass
class Node:
    """One operator. ``inputs`` may contain ``""`` for an absent optional input."""

    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""

    def attr(self, key: str, default: Any = None) -> Any:
        """The attribute ``key`` or ``default`` when it is absent."""
        return self.attrs.get(key, default)

    def copy(self) -> Node:
        return Node(
            self.name,
            self.op_type,
            list(self.inputs),
            list(self.outputs),
            _copy.deepcopy(self.attrs),
            self.domain,
        )

    def __repr__(self) -> str:  # short, for error messages and debugging
        return f"Node({self.name!r}, {self.op_type}, in={self.inputs}, out={self.outputs})"


class Graph:
    """A computation graph; see the module docstring."""

    def __init__(
        self,
        nodes: Iterable[Node] = (),
        initializers: dict[str, np.ndarray] | None = None,
        values: dict[str, TensorInfo] | None = None,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        name: str = "main_graph",
        opset: int = 18,
        metadata: dict[str, str] | None = None,
    ):
        self.nodes: list[Node] = list(nodes)
        self.initializers: dict[str, np.ndarray] = dict(initializers or {})
        self.values: dict[str, TensorInfo] = dict(values or {})
        self.inputs: list[str] = list(inputs)
        self.outputs: list[str] = list(outputs)
        self.name = name
        self.opset = opset
        self.metadata: dict[str, str] = dict(metadata or {})
        self._index: tuple[dict[str, Node], dict[str, list[Node]], dict[str, Node]] | None = None

    # ------------------------------------------------------------------ lookups
    def _build_index(self) -> tuple[dict[str, Node], dict[str, list[Node]], dict[str, Node]]:
        if self._index is None:
            producers: dict[str, Node] = {}
            consumers: dict[str, list[Node]] = {}
            by_name: dict[str, Node] = {}
            for node in self.nodes:
                by_name[node.name] = node
                for out in node.outputs:
                    if out:
                        producers[out] = node
                for inp in node.inputs:
                    if inp:
                        lst = consumers.setdefault(inp, [])
                        if not lst or lst[-1] is not node:
                            lst.append(node)
            self._index = (producers, consumers, by_name)
        return self._index

    def invalidate(self) -> None:
        """Forget cached def-use maps; call after editing ``nodes`` or a node's inputs/outputs."""
        self._index = None

    def producer(self, tensor: str) -> Node | None:
        """The node that writes ``tensor`` (``None`` for inputs and initializers)."""
        return self._build_index()[0].get(tensor)

    def consumers(self, tensor: str) -> list[Node]:
        """Nodes that read ``tensor``, in graph order, each once."""
        return list(self._build_index()[1].get(tensor, ()))

    def node(self, name: str) -> Node:
        """The node called ``name`` (KeyError if absent)."""
        return self._build_index()[2][name]

    def has_node(self, name: str) -> bool:
        return name in self._build_index()[2]

    def is_constant(self, tensor: str) -> bool:
        return tensor in self.initializers

    def shape(self, tensor: str) -> tuple[int, ...] | None:
        """Static shape of ``tensor`` (initializer or activation), ``None`` if unknown."""
        if tensor in self.initializers:
            return tuple(self.initializers[tensor].shape)
        info = self.values.get(tensor)
        return None if info is None else info.shape

    def dtype(self, tensor: str) -> np.dtype | None:
        if tensor in self.initializers:
            return self.initializers[tensor].dtype
        info = self.values.get(tensor)
        return None if info is None else info.dtype

    def tensor_names(self) -> set[str]:
        names = set(self.initializers) | set(self.values) | set(self.inputs)
        for node in self.nodes:
            names.update(n for n in node.inputs if n)
            names.update(n for n in node.outputs if n)
        return names

    def unique_name(self, base: str) -> str:
        """A tensor/node name not used anywhere in the graph, derived from ``base``."""
        taken = self.tensor_names() | set(self._build_index()[2])
        if base not in taken:
            return base
        i = 1
        while f"{base}_{i}" in taken:
            i += 1
        return f"{base}_{i}"

    # ------------------------------------------------------------------ edits
    def add_node(self, node: Node, index: int | None = None) -> Node:
        """Insert ``node`` at ``index`` (default: end). Call :meth:`toposort` if order may break."""
        if index is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(index, node)
        self.invalidate()
        return node

    def remove_node(self, node: Node) -> None:
        self.nodes = [n for n in self.nodes if n is not node]
        self.invalidate()

    def replace_uses(self, old: str, new: str, keep_outputs: bool = False) -> None:
        """Make every reader of tensor ``old`` read ``new`` (and graph outputs, unless told not to)."""
        for node in self.nodes:
            node.inputs = [new if i == old else i for i in node.inputs]
        if not keep_outputs:
            self.outputs = [new if o == old else o for o in self.outputs]
        self.invalidate()

    def bypass(self, node: Node, keep: int = 0) -> None:
        """Remove a single-output pass-through ``node``; its readers read its input ``keep``.

        If the node's output is a graph output, the upstream tensor is renamed to keep the
        graph's interface names stable.
        """
        src, dst = node.inputs[keep], node.outputs[0]
        self.remove_node(node)
        if dst in self.outputs and src not in self.inputs and src not in self.initializers:
            # keep the output name: rename the upstream tensor instead
            self.rename_tensor(src, dst)
        else:
            self.replace_uses(dst, src)
            self.values.pop(dst, None)

    def rename_tensor(self, old: str, new: str) -> None:
        """Rename tensor ``old`` to ``new`` everywhere (``new`` must be unused or be being freed)."""
        for node in self.nodes:
            node.inputs = [new if i == old else i for i in node.inputs]
            node.outputs = [new if o == old else o for o in node.outputs]
        self.inputs = [new if i == old else i for i in self.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]
        if old in self.values:
            self.values[new] = self.values.pop(old)
        if old in self.initializers:
            self.initializers[new] = self.initializers.pop(old)
        self.invalidate()

    def toposort(self) -> None:
        """Reorder ``nodes`` topologically, keeping the current order where it is already valid."""
        available = set(self.inputs) | set(self.initializers) | {""}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            progressed = False
            rest = []
            for node in pending:
                if all(i in available for i in node.inputs):
                    ordered.append(node)
                    available.update(node.outputs)
                    progressed = True
                else:
                    rest.append(node)
            if not progressed:
                missing = {i for n in rest for i in n.inputs if i not in available}
                raise ShapeError(
                    f"graph '{self.name}' has a cycle or reads undefined tensors "
                    f"{sorted(missing)[:5]} (nodes {[n.name for n in rest[:5]]}); "
                    "check the model with onnx.checker"
                )
            pending = rest
        self.nodes = ordered
        self.invalidate()

    def prune(self) -> int:
        """Delete nodes, initializers and value infos that reach no graph output. Returns #nodes removed."""
        needed = set(self.outputs)
        keep: list[Node] = []
        for node in reversed(self.nodes):
            if any(o in needed for o in node.outputs if o):
                keep.append(node)
                needed.update(i for i in node.inputs if i)
        removed = len(self.nodes) - len(keep)
        self.nodes = keep[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in needed}
        live = needed | set(self.inputs)
        for node in self.nodes:
            live.update(node.outputs)
        self.values = {k: v for k, v in self.values.items() if k in live}
        self.invalidate()
        return removed

    def copy(self) -> Graph:
        """A copy whose nodes, lists and dicts are independent; initializer arrays are shared
        (they are treated as immutable: passes replace arrays, they never write into them)."""
        g = Graph(
            [n.copy() for n in self.nodes],
            dict(self.initializers),
            {k: v.copy() for k, v in self.values.items()},
            list(self.inputs),
            list(self.outputs),
            self.name,
            self.opset,
            dict(self.metadata),
        )
        return g

    def __repr__(self) -> str:
        return (
            f"Graph({self.name!r}, {len(self.nodes)} nodes, {len(self.initializers)} initializers, "
            f"inputs={self.inputs}, outputs={self.outputs})"
        )
