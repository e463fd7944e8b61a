"""Build a quantization plan skeleton (specs without exponents) from a graph and node precisions.

Rules (esp_ppq_facts.md §2.3–§2.7, esp_dl_facts.md §3.2/§4):

* Any quantized op followed by a single-consumer Relu or Clip shares the activation's output spec
  (ESP-PPQ's fuse_relu_clip); Conv/Gemm/MatMul + Relu are also fused into one node at export.
* Passive ops (data movement, MaxPool, ReduceMax/Min) keep input 0's spec.
* Add/Sub/Concat/Resize: inputs aligned to the output. A producer that is not passive, has this op as
  its only consumer and runs at the same bit width joins the output's group; otherwise the producer keeps
  its own spec and a requantize step is recorded for that input.
* Add/Sub also record their aligned inputs per group (``group_inputs``): calibration raises the group's
  exponent to cover the inputs' ranges where the output's range collapsed below them
  (:func:`espq.quant.calibrate.covering_exponent`; ESP-PPQ fits the output only).
* Comparisons: all inputs take one spec from their merged range ("align to largest").
* Wherever a consumer needs another bit width or exponent than the tensor has, a requantize step.
* Weights observed (per channel on targets that support it), bias derived (input + weight exponent,
  target bias width), Clip bounds / Pad value share the input's spec, GRU/LSTM biases fixed 2^-9 16-bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from espq.ir import Graph, Node
from espq.ir import quant_rules as rules
from espq.ir.spec import (
    BITS_OF_QUANT_TYPE,
    DERIVED,
    F32,
    FIXED,
    OBSERVED,
    SHARED,
    QuantPlan,
    TensorSpec,
)


@dataclass
class PlanSkeleton:
    """A plan whose activation exponents are still to be calibrated.

    ``group_masters`` maps a group id to the tensors whose statistics decide its exponent;
    ``observed_tensors`` lists every activation tensor whose statistics calibration must collect.
    """

    plan: QuantPlan
    group_masters: dict[str, list[str]] = field(default_factory=dict)
    #: groups whose observer is fixed by the rules (comparisons: min/max over all inputs, §2.6)
    group_algorithms: dict[str, str] = field(default_factory=dict)
    #: Add/Sub groups: the aligned input tensors (activations and constants) whose ranges the group's
    #: exponent must cover when the output's range collapses (:data:`~espq.ir.quant_rules.INPUT_COVERING_OPS`)
    group_inputs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def observed_tensors(self) -> list[str]:
        seen: dict[str, None] = {}
        for tensors in (*self.group_masters.values(), *self.group_inputs.values()):
            for t in tensors:
                seen.setdefault(t, None)
        return list(seen)


COMPARISON_GROUP_SUFFIX = "#inputs"


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.masters: dict[str, list[str]] = {}
        self.bits: dict[str, int] = {}

    def add(self, t: str, bits: int, masters: list[str] | None = None) -> None:
        self.parent[t] = t
        self.masters[t] = list(masters if masters is not None else [t])
        self.bits[t] = bits

    def __contains__(self, t: str) -> bool:
        return t in self.parent

    def find(self, t: str) -> str:
        root = t
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[t] != root:
            self.parent[t], t = root, self.parent[t]
        return root

    def absorb(self, into: str, other: str) -> None:
        """Merge ``other``'s group into ``into``'s; ``into``'s masters decide the exponent."""
        a, b = self.find(into), self.find(other)
        if a != b:
            self.parent[b] = a
            self.masters.pop(b, None)
            self.bits.pop(b, None)


def _bits(node_types: dict[str, str], node: Node) -> int | None:
    return BITS_OF_QUANT_TYPE.get(node_types.get(node.name, F32))


def _shares_with_host(graph: Graph, act: Node, uf: _UnionFind, bits: int) -> bool:
    """Whether activation ``act`` (Relu/Clip) and its input's producer share the activation's output spec.

    ESP-PPQ's ``fuse_relu_clip`` (esp_ppq_facts.md §2.6): any quantized op followed by a Relu/Clip that is
    its only consumer (a Conv/Gemm/MatMul host at any width: the Relu follows it). The host's output is
    then rounded once, at the exponent calibrated on the activation's output (e.g. Add -> Relu in a
    ResNet block: the post-ReLU distribution decides, not the signed sum's).
    """
    src = act.inputs[0]
    host = graph.producer(src)
    if (
        host is None
        or src not in uf
        or len(graph.consumers(src)) != 1
        or src in graph.outputs
        or host.op_type in rules.RNN_OPS
    ):
        return False
    return host.op_type in rules.RELU_FUSION_HOSTS and act.op_type == "Relu" or uf.bits[uf.find(src)] == bits


def _plan_recurrent(
    graph: Graph,
    node: Node,
    uf: _UnionFind,
    requant_groups: dict[str, tuple[str, list[str]]],
    fixed_requant: dict[str, TensorSpec],
    plan: QuantPlan,
) -> None:
    """GRU/LSTM specs as ESP-DL's modules need them (``dl_module_gru.hpp`` / ``dl_module_lstm.hpp``):
    Y_h shares Y's group (the hidden state is written as Y and read back at Y_h's exponent); LSTM's Y_c
    is int16 at the gate exponent (asserted by the module); an activation ``initial_h`` is requantized
    to Y's spec and an activation ``initial_c`` to the fixed int16 spec (both are copied raw)."""
    fixed = TensorSpec(bits=16, exponent=rules.RNN_FIXED_EXPONENT, source=FIXED)
    y = node.outputs[0]
    for k in rules.RNN_FIXED_OUTPUTS.get(node.op_type, ()):
        if k < len(node.outputs) and node.outputs[k]:
            plan.tensors[node.outputs[k]] = fixed
    if len(node.outputs) > 1 and node.outputs[1] and y in uf:
        uf.absorb(y, node.outputs[1])
    for i, src in _activation_inputs(graph, node):
        key = f"{node.name}:{i}"
        if i == rules.RNN_INITIAL_H and y in uf and (src not in uf or uf.find(src) != uf.find(y)):
            requant_groups[key] = (y, [])
        elif i in rules.RNN_FIXED_INPUTS.get(node.op_type, ()):
            fixed_requant[key] = fixed


def _activation_inputs(graph: Graph, node: Node) -> list[tuple[int, str]]:
    return [(i, t) for i, t in enumerate(node.inputs) if t and t not in graph.initializers]


def build_plan(
    graph: Graph,
    node_types: dict[str, str],
    target,
    bits: int,
    calib_algorithm: str = "kl",
) -> PlanSkeleton:
    """Derive every tensor's spec (exponents unset) for ``graph`` with the given node precisions.

    ``target`` is an :class:`espq.targets.Target` (reads ``name``, ``per_channel_weights`` and
    ``bias_bits``).
    """
    plan = QuantPlan(
        target=target.name, bits=bits, node_types=dict(node_types), calib_algorithm=calib_algorithm
    )
    uf = _UnionFind()
    requant_groups: dict[str, tuple[str, list[str]]] = {}  # requant key -> (group id, masters)
    fixed_requant: dict[str, TensorSpec] = {}  # requant key -> fixed spec (LSTM initial_c)
    covered: list[tuple[str, list[str]]] = []  # (Add/Sub output, its aligned inputs)

    # graph inputs read by quantized nodes are quantized at their first quantized consumer's width
    for name in graph.inputs:
        widths = [_bits(node_types, c) for c in graph.consumers(name)]
        widths = [w for w in widths if w is not None]
        if widths:
            uf.add(name, widths[0])

    for node in graph.nodes:
        b = _bits(node_types, node)
        if b is None:
            continue
        op = node.op_type
        if op not in rules.BOOL_OUTPUT_OPS and op not in rules.FLOAT_OUTPUT_OPS:
            fixed_outs = rules.RNN_FIXED_OUTPUTS.get(op, frozenset())
            for k, out in enumerate(node.outputs):
                if out and k not in fixed_outs:
                    uf.add(out, b)
        acts = _activation_inputs(graph, node)
        if op in rules.PASSIVE_OPS and acts and acts[0][0] == 0:
            src = acts[0][1]
            if src in uf and uf.bits[uf.find(src)] == b:
                for out in node.outputs:
                    if out:
                        uf.absorb(src, out)
        elif op in rules.ACTIVATIONS_SHARING_INPUT and acts and _shares_with_host(graph, node, uf, b):
            src = acts[0][1]
            host = graph.producer(src)
            # a Relu after an int16 Conv follows the Conv (node types were aligned before)
            uf.absorb(node.outputs[0], src)
            if op == "Relu" and host.op_type in rules.RELU_FUSION_HOSTS:
                plan.fused[host.name] = node.name
        elif op in rules.ALIGN_TO_OUTPUT:
            out = node.outputs[0]
            aligned = rules.ALIGN_TO_OUTPUT[op]
            if op in rules.INPUT_COVERING_OPS:
                covered.append(
                    (out, [t for i, t in enumerate(node.inputs) if t and (aligned is None or i in aligned)])
                )
            for i, src in acts:
                if aligned is not None and i not in aligned:
                    continue
                prod = graph.producer(src)
                joinable = (
                    prod is not None
                    and src in uf
                    and uf.bits[uf.find(src)] == b
                    and prod.op_type not in rules.PASSIVE_OPS
                    and len(graph.consumers(src)) == 1
                    and src not in graph.outputs
                )
                if joinable:
                    uf.absorb(out, src)
                else:
                    requant_groups[f"{node.name}:{i}"] = (out, [])
        elif op in rules.RNN_OPS:
            _plan_recurrent(graph, node, uf, requant_groups, fixed_requant, plan)
        elif op in rules.ALIGN_TO_LARGEST:
            gid = f"{node.name}{COMPARISON_GROUP_SUFFIX}"
            masters = [src for src in node.inputs if src]  # constants too: their values are observed
            for i, src in enumerate(node.inputs):
                if src:
                    requant_groups[f"{node.name}:{i}"] = (gid, masters)

    # inputs whose spec (bits or group) is not what the consumer needs
    for node in graph.nodes:
        b = _bits(node_types, node)
        if b is None:
            continue
        for i, src in _activation_inputs(graph, node):
            key = f"{node.name}:{i}"
            if key in requant_groups or key in fixed_requant:
                continue
            if src not in uf or uf.bits[uf.find(src)] != b:
                requant_groups[key] = (f"{src}@{b}", [src])
            elif node.op_type in rules.PASSIVE_OPS and i == 0 and node.outputs[0] in uf:
                if uf.find(src) != uf.find(node.outputs[0]):
                    requant_groups[key] = (node.outputs[0], [])

    # ------------------------------------------------------------------ activation specs
    group_masters: dict[str, list[str]] = {}
    for t in list(uf.parent):
        root = uf.find(t)
        group_masters.setdefault(root, uf.masters[root])
        plan.tensors[t] = TensorSpec(
            bits=uf.bits[root],
            source=OBSERVED if t == root else SHARED,
            group=root,
            ref=() if t == root else (root,),
        )
    for key, (gid, masters) in requant_groups.items():
        node_name, idx = key.rsplit(":", 1)
        node = graph.node(node_name)
        b = _bits(node_types, node)
        if gid in uf:
            root = uf.find(gid)
            plan.requant[key] = TensorSpec(bits=uf.bits[root], source=SHARED, group=root, ref=(root,))
        else:
            group_masters.setdefault(gid, masters)
            plan.requant[key] = TensorSpec(bits=b, source=OBSERVED, group=gid)
    plan.requant.update(fixed_requant)

    # ------------------------------------------------------------------ parameters
    for node in graph.nodes:
        b = _bits(node_types, node)
        if b is None:
            continue
        _plan_parameters(graph, node, b, plan, target, uf)
    algorithms = {gid: "minmax" for gid in group_masters if gid.endswith(COMPARISON_GROUP_SUFFIX)}
    group_inputs: dict[str, list[str]] = {}
    for out, inputs in covered:
        if out in uf:
            tensors = group_inputs.setdefault(uf.find(out), [])
            tensors.extend(t for t in inputs if t not in tensors)
    return PlanSkeleton(plan, group_masters, algorithms, group_inputs)


def _plan_parameters(graph: Graph, node: Node, b: int, plan: QuantPlan, target, uf: _UnionFind) -> None:
    op = node.op_type
    weight_idx, bias_idx = rules.WEIGHTED_OPS.get(op, (None, None))
    for i, name in enumerate(node.inputs):
        if not name or name not in graph.initializers:
            continue
        if i in rules.INDEX_INPUTS.get(op, ()):
            continue
        key = f"{node.name}:{i}"
        if i == weight_idx:
            axis = rules.weight_channel_axis(op, node.attrs) if target.per_channel_weights else None
            plan.tensors[name] = TensorSpec(bits=b, axis=axis, source=OBSERVED)
        elif i == bias_idx:
            plan.tensors[name] = TensorSpec(
                bits=target.bias_bits[b],
                axis=0,
                source=DERIVED,
                ref=(f"{node.name}:0", node.inputs[weight_idx]),
            )
        elif i in rules.SHARED_WITH_INPUT.get(op, ()):
            plan.tensors[name] = TensorSpec(bits=b, source=SHARED, ref=(f"{node.name}:0",))
        elif i in rules.RNN_FIXED_INPUTS.get(op, ()):
            plan.tensors[name] = TensorSpec(bits=16, exponent=rules.RNN_FIXED_EXPONENT, source=FIXED)
        elif op in rules.RNN_OPS and i == rules.RNN_INITIAL_H and node.outputs[0] in uf:
            root = uf.find(node.outputs[0])  # a constant initial state: stored at Y's spec
            plan.tensors[name] = TensorSpec(bits=uf.bits[root], source=SHARED, group=root, ref=(root,))
        elif key in plan.requant and plan.requant[key].group is not None:
            # aligned ops: a constant operand takes the aligned spec
            req = plan.requant.pop(key)
            plan.tensors[name] = TensorSpec(bits=req.bits, source=SHARED, group=req.group, ref=req.ref)
        elif op in rules.ALIGN_TO_OUTPUT and node.outputs[0] in uf:
            root = uf.find(node.outputs[0])
            plan.tensors[name] = TensorSpec(bits=uf.bits[root], source=SHARED, group=root, ref=(root,))
        else:
            plan.tensors[name] = TensorSpec(bits=b, source=OBSERVED)
