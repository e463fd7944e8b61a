"""Channel-last layout (esp_dl_facts.md §2.5, esp_ppq_facts.md §3.7 step 4 ``reset_graph_layout``).

Conv-like ops run on NHWC (4-D) / NWC (3-D) tensors. Every activation gets a permutation (exported
axis i = original axis perm[i]); the rewrite walks the nodes in order:

* conv-like ops: input 0 is brought to channel-last, outputs are channel-last;
* unary elementwise ops (activations, math, quantize nodes): outputs inherit input 0's perm;
* broadcasting binary ops: activations of equal rank share one perm (channel-last preferred);
  constant operands of lower or equal rank are expanded and permuted to match (right by construction;
  ESP-PPQ falls back to NCHW for lower-rank constants);
* axis ops (Concat, Softmax, LogSoftmax, LpNormalization, Split, Reduce*, Slice, Pad, Gather):
  axis attributes / axes inputs are remapped through the perm, negative axes included (ESP-PPQ
  crashes on negative Concat axes, §9.2); keepdims=0 / scalar Gather drop the axis from the perm;
* Transpose: its perm is composed with the input's, output in original layout;
* every other op (Flatten, Reshape, Gemm, MatMul, ...) reads original-layout inputs: a Transpose is
  inserted where an input is permuted (e.g. ``perm=[0,3,1,2]`` before Flatten).

Graph inputs read by a conv-like op become channel-last in the file (zoo inputs are [1,H,W,3]);
graph outputs keep the perm of their producer (as ESP-PPQ does). Resize scales/sizes and Pad/Slice
index data other than axes stay in original order where the runtime expects it (§2.5).
"""

from __future__ import annotations

import numpy as np

from espq.errors import UnsupportedOpError
from espq.export.lower.state import QUANT_TYPE, ExportState
from espq.ir import Node
from espq.ir.op_facts import CONV_LAYOUT_OPS, OP_FACTS, Axes, Layout, ops_with

# the op families are the op-facts table's (espq.ir.op_facts); the runner's layout replay reads the same
CONV_LIKE = CONV_LAYOUT_OPS
UNARY = ops_with(layout=Layout.UNARY)
BROADCAST = ops_with(layout=Layout.BROADCAST)
AXIS_OPS = ops_with(layout=Layout.AXIS)
AXIS_ATTR_OPS = ops_with(axes=Axes.ATTR)
AXIS_DEFAULTS = {op: OP_FACTS[op].axis_default for op in AXIS_ATTR_OPS}


def channel_last_perm(rank: int | None) -> tuple[int, ...] | None:
    """(0, 2, 3, 1) for 4-D, (0, 2, 1) for 3-D, None otherwise."""
    return {4: (0, 2, 3, 1), 3: (0, 2, 1)}.get(rank or 0)


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


class _Layout:
    def __init__(self, state: ExportState):
        self.s = state
        self.g = state.graph
        self.cache: dict[tuple[str, tuple[int, ...]], str] = {}
        self.inserted = 0

    # -------------------------------------------------------------- helpers
    def set_perm(self, tensor: str, perm: tuple[int, ...]) -> None:
        if perm == _identity(len(perm)):
            self.s.perms.pop(tensor, None)
        else:
            self.s.perms[tensor] = tuple(perm)

    def ensure(self, node: Node, idx: int, want: tuple[int, ...]) -> None:
        """Make input ``idx`` of ``node`` arrive with perm ``want`` (insert a Transpose if needed)."""
        t = node.inputs[idx]
        have = self.s.perm(t)
        if have == want:
            return
        key = (t, want)
        if key not in self.cache:
            rel = [have.index(w) for w in want]
            out = self.s.new_tensor(f"{t}_transposed", t, self.s.specs.get(t))
            self.set_perm(out, want)
            name = self.g.unique_name(f"Transpose_{t}")
            tnode = Node(
                name, "Transpose", [t], [out], {"perm": rel, QUANT_TYPE: self.s.tensor_quant_type(t)}
            )
            self.s.insert_before(node, tnode)
            self.cache[key] = out
            self.inserted += 1
        node.inputs[idx] = self.cache[key]
        self.g.invalidate()

    def acts(self, node: Node) -> list[int]:
        return [i for i, t in enumerate(node.inputs) if self.s.is_activation(t)]

    def to_original(self, node: Node) -> None:
        for i in self.acts(node):
            r = self.s.rank(node.inputs[i])
            if r is not None:
                self.ensure(node, i, _identity(r))
        for o in node.outputs:
            self.s.perms.pop(o, None)

    def outputs_like(self, node: Node, perm: tuple[int, ...]) -> None:
        for o in node.outputs:
            if o and self.s.rank(o) == len(perm):
                self.set_perm(o, perm)

    def const_input(self, node: Node, idx: int) -> np.ndarray | None:
        t = node.inputs[idx] if idx < len(node.inputs) else ""
        return None if not t or t not in self.g.initializers else np.asarray(self.g.initializers[t])

    def set_const(self, node: Node, idx: int, value: np.ndarray, base: str) -> None:
        """Input ``idx`` of ``node`` becomes the constant ``value``: in place when no other input reads
        that initializer, else a new one (a shared initializer, e.g. Slice starts == axes merged by the
        frontend, keeps its value for its other readers)."""
        t = node.inputs[idx] if idx < len(node.inputs) else ""
        if t and sum(n.inputs.count(t) for n in self.g.consumers(t)) == 1 and t not in self.g.outputs:
            self.g.initializers[t] = value
            return
        while len(node.inputs) <= idx:
            node.inputs.append("")
        node.inputs[idx] = self.s.new_initializer(f"{node.name}_{base}", value)
        if t in self.s.params:
            self.s.params[node.inputs[idx]] = self.s.params[t]
        self.g.invalidate()

    def per_channel_prelu(self, node: Node) -> bool:
        """PRelu with a per-channel slope runs channel-last: ESP-DL's PRelu module reads alpha[c] for
        c < ``input->shape[3]`` (dl_module_prelu.hpp ``forward``, dl_base.hpp ``get_activation_args``)
        and asserts a 3-D slope ``[C, 1, 1]`` (``deserialize``), so the slope is stored as ``[C, 1, 1]``
        and a 4-D input is brought to NHWC. Other slope shapes or ranks do not run on the chip."""
        slope = self.const_input(node, 1) if node.op_type == "PRelu" else None
        if slope is None:
            return False
        shape = self.s.graph.shape(node.inputs[0])
        rank = len(shape) if shape is not None else 0
        full = (1,) * (rank - slope.ndim) + slope.shape  # ONNX broadcasting aligns on the right
        if slope.size != 1 and (rank != 4 or full != (1, int(shape[1]), 1, 1)):
            raise UnsupportedOpError(
                f"node '{node.name}' (PRelu): slope shape {list(slope.shape)} on a {rank}-D input "
                f"{list(shape or [])}; ESP-DL runs PRelu on 4-D tensors with one slope or one per "
                "channel ([C, 1, 1]); reshape the input to 4-D or use a per-channel slope"
            )
        if slope.shape != (slope.size, 1, 1):
            self.set_const(node, 1, np.ascontiguousarray(slope.reshape(slope.size, 1, 1)), "slope")
        return slope.size > 1

    # -------------------------------------------------------------- rules
    def visit(self, node: Node) -> None:
        op = node.op_type
        acts = self.acts(node)
        if not acts:
            return
        x = node.inputs[acts[0]]
        r = self.s.rank(x)
        if (op in CONV_LIKE or self.per_channel_prelu(node)) and acts[0] == 0 and channel_last_perm(r):
            p = channel_last_perm(r)
            self.ensure(node, 0, p)
            for i in acts[1:]:
                self.ensure(node, i, _identity(self.s.rank(node.inputs[i]) or 0))
            self.outputs_like(node, p)
        elif op in UNARY and acts == [0]:
            self.outputs_like(node, self.s.perm(x))
        elif op in BROADCAST:
            self.broadcast(node, acts)
        elif op in AXIS_OPS:
            if not self.axis_op(node, acts):
                self.to_original(node)
        elif op == "Transpose":
            p = self.s.perm(x)
            q = node.attr("perm") or list(reversed(range(len(p))))
            node.attrs["perm"] = [p.index(int(a) % len(p)) for a in q]
            for o in node.outputs:
                self.s.perms.pop(o, None)
        else:
            self.to_original(node)

    def broadcast(self, node: Node, acts: list[int]) -> None:
        ranks = {self.s.rank(node.inputs[i]) for i in acts}
        out_rank = self.s.rank(node.outputs[0])
        if len(ranks) != 1 or None in ranks or out_rank not in ranks:
            self.to_original(node)
            return
        (rank,) = ranks
        perms = [self.s.perm(node.inputs[i]) for i in acts]
        cl = channel_last_perm(rank)
        if len(set(perms)) == 1:
            target = perms[0]
        elif cl in perms:  # ESP-PPQ: prefer channel-last, then any permuted layout, then input 0's
            target = cl
        else:
            target = next((p for p in perms if p != _identity(rank)), perms[0])
        consts = [i for i, t in enumerate(node.inputs) if t and t in self.g.initializers]
        if target != _identity(rank) and any(self.g.initializers[node.inputs[i]].ndim > rank for i in consts):
            target = _identity(rank)
        for i in acts:
            self.ensure(node, i, target)
        if target != _identity(rank):
            for i in consts:
                c = np.asarray(self.g.initializers[node.inputs[i]])
                if c.size > 1:
                    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
                    self.set_const(node, i, np.ascontiguousarray(full.transpose(target)), "const")
        self.outputs_like(node, target)

    def axis_op(self, node: Node, acts: list[int]) -> bool:
        """Remap the axis information of an axis op; False when it must run in the original layout."""
        op = node.op_type
        data = [0] if op != "Concat" else acts
        if op != "Concat" and acts != [0] and not (op == "Gather" and acts[0] == 0):
            return False
        perms = {self.s.perm(node.inputs[i]) for i in data}
        if len(perms) != 1:
            return False
        (p,) = perms
        rank = len(p)
        if p == _identity(rank):
            return True  # nothing to remap; outputs keep identity
        if op == "Concat" and any(node.inputs[i] in self.g.initializers for i in range(len(node.inputs))):
            return False
        if op in AXIS_ATTR_OPS:
            a = int(node.attr("axis", AXIS_DEFAULTS.get(op, 0))) % rank
            node.attrs["axis"] = p.index(a)
            self.outputs_like(node, p)
            return True
        if op.startswith("Reduce"):
            return self.reduce(node, p)
        if op == "Slice":
            return self.slice(node, p)
        if op == "Pad":
            return self.pad(node, p)
        return self.gather(node, p)

    def reduce(self, node: Node, p: tuple[int, ...]) -> bool:
        rank = len(p)
        if "axes" in node.attrs:
            axes = [int(a) % rank for a in node.attrs["axes"]]
            node.attrs["axes"] = [p.index(a) for a in axes]
        else:
            c = self.const_input(node, 1)
            if c is None and len(node.inputs) > 1 and node.inputs[1]:
                return False
            if c is None or c.size == 0:
                axes = list(range(rank))  # reduce over everything (noop_with_empty_axes handled by ONNX)
                if int(node.attr("noop_with_empty_axes", 0)):
                    self.outputs_like(node, p)
                    return True
            else:
                axes = [int(a) % rank for a in c.reshape(-1)]
                self.set_const(node, 1, np.array([p.index(a) for a in axes], dtype=np.int64), "axes")
        if int(node.attr("keepdims", 1)):
            self.outputs_like(node, p)
        else:
            self.outputs_like(node, _drop_axes(p, set(axes)))
        return True

    def slice(self, node: Node, p: tuple[int, ...]) -> bool:
        starts = self.const_input(node, 1)
        axes = self.const_input(node, 3)
        if starts is None or (axes is None and len(node.inputs) > 3 and node.inputs[3]):
            return False
        rank = len(p)
        orig = [int(a) % rank for a in axes.reshape(-1)] if axes is not None else list(range(starts.size))
        self.set_const(node, 3, np.array([p.index(a) for a in orig], dtype=np.int64), "axes")
        self.outputs_like(node, p)
        return True

    def pad(self, node: Node, p: tuple[int, ...]) -> bool:
        pads = self.const_input(node, 1)
        if pads is None:
            return False
        rank = len(p)
        axes = self.const_input(node, 3)
        if axes is not None:
            self.set_const(
                node, 3, np.array([p.index(int(a) % rank) for a in axes.reshape(-1)], np.int64), "axes"
            )
        elif len(node.inputs) > 3 and node.inputs[3]:
            return False
        else:
            flat = pads.reshape(-1).astype(np.int64)
            new = np.concatenate([flat[list(p)], flat[[rank + a for a in p]]])
            self.set_const(node, 1, new, "pads")
        self.outputs_like(node, p)
        return True

    def gather(self, node: Node, p: tuple[int, ...]) -> bool:
        rank = len(p)
        idx_rank = self.s.rank(node.inputs[1]) if len(node.inputs) > 1 else None
        if idx_rank not in (0, 1):
            return False
        a = int(node.attr("axis", 0)) % rank
        node.attrs["axis"] = p.index(a)
        self.outputs_like(node, p if idx_rank == 1 else _drop_axes(p, {a}))
        return True


def _drop_axes(p: tuple[int, ...], removed: set[int]) -> tuple[int, ...]:
    """The perm of a tensor whose original axes ``removed`` were dropped (renumbered)."""
    kept = sorted(a for a in p if a not in removed)
    return tuple(kept.index(a) for a in p if a not in removed)


def _cache_before_conv(g, node: Node) -> bool:
    """A StreamingCache read by a conv-like op: ESP-PPQ lays the graph out before it inserts the
    caches (esp_ppq_facts.md §8.2), so a graph input cached in front of a Conv is channel-last."""
    return node.op_type == "StreamingCache" and any(
        c.op_type in CONV_LIKE for c in g.consumers(node.outputs[0])
    )


def to_channel_last(state: ExportState) -> int:
    """Apply the layout rules to every node; returns the number of Transposes inserted."""
    lay = _Layout(state)
    g = state.graph
    for name in g.inputs:
        r = state.rank(name)
        if channel_last_perm(r) and any(
            c.op_type in CONV_LIKE or lay.per_channel_prelu(c) or _cache_before_conv(g, c)
            for c in g.consumers(name)
        ):
            lay.set_perm(name, channel_last_perm(r))
    for node in list(g.nodes):
        lay.visit(node)
    return lay.inserted
