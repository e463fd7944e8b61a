"""Reuse the exponents of a reference `.espdl` (e.g. one written by ESP-PPQ from the same ONNX).

Tensors are matched by name: activations through the reference's ValueInfos, parameters through
its initializers (per-channel when it stores one exponent per channel). A ``requant`` entry
(``"<node>:<i>"``) takes the exponent of the tensor the reference node of that name reads on input i
(the output of the reference's RequantizeLinear). Specs without a match keep the plan's exponent.
"""

from __future__ import annotations

from dataclasses import replace

from espq.espdl.diff import diff_tensor, diff_value_info
from espq.espdl.model import EspdlModel
from espq.ir import Graph
from espq.ir.spec import QuantPlan, TensorSpec


def _exponent(spec: TensorSpec, exps: list[int]) -> int | tuple[int, ...]:
    if len(exps) > 1:
        return tuple(int(e) for e in exps)
    return int(exps[0]) if exps else 0


def plan_from_espdl(graph: Graph, plan: QuantPlan, reference: EspdlModel) -> tuple[QuantPlan, list[str]]:
    """A copy of ``plan`` with exponents from ``reference``; also returns the tensors left unmatched.

    ``graph`` is the quantized model's IR (used to tell parameters from activations).
    """
    ref = reference.graph
    values = {v.name: v for v in ref.value_info}
    unmatched: list[str] = []
    tensors: dict[str, TensorSpec] = {}
    for name, spec in plan.tensors.items():
        if name in graph.initializers and name in ref.initializers:
            t = ref.initializers[name]
            exp = _exponent(spec, t.exponents)
            axis = spec.axis if isinstance(exp, tuple) else spec.axis
            tensors[name] = replace(spec, exponent=exp, axis=axis)
        elif name in values and values[name].exponents:
            tensors[name] = replace(spec, exponent=int(values[name].exponent))
        else:
            tensors[name] = spec
            unmatched.append(name)
    # a Conv output fused with its Relu shares the Relu output's spec (same group)
    for name, spec in list(tensors.items()):
        if name in unmatched and spec.ref and spec.ref[0] in tensors and spec.group == spec.ref[0]:
            tensors[name] = replace(spec, exponent=tensors[spec.ref[0]].exponent)
            unmatched.remove(name)
    requant: dict[str, TensorSpec] = {}
    nodes = {n.name: n for n in ref.nodes}
    for key, spec in plan.requant.items():
        node_name, idx = key.rsplit(":", 1)
        node = nodes.get(node_name)
        src = node.inputs[int(idx)] if node is not None and int(idx) < len(node.inputs) else None
        if src in values:
            requant[key] = replace(spec, exponent=int(values[src].exponent))
        else:
            requant[key] = spec
            unmatched.append(key)
    new = QuantPlan(
        plan.target,
        plan.bits,
        dict(plan.node_types),
        tensors,
        requant,
        dict(plan.fused),
        plan.calib_algorithm,
    )
    return new, unmatched


def compare_models(ours: EspdlModel, ref: EspdlModel) -> dict[str, list[str]]:
    """Field-by-field differences between two models, by category.

    ``ops``: the op-type sequences differ (one line with both); ``initializers``: one line per differing
    field of a common initializer (dims, data type, layout, exponents, codes), ``value_info``: per differing
    field of a common activation (shape, element type, exponents), both from :mod:`espq.espdl.diff` and
    starting with the tensor's name; ``only_ours`` / ``only_ref``: initializer and
    activation names present in one model only.
    """
    diff: dict[str, list[str]] = {
        "ops": [],
        "initializers": [],
        "value_info": [],
        "only_ours": [],
        "only_ref": [],
    }
    a_ops = [n.op_type for n in ours.graph.nodes]
    b_ops = [n.op_type for n in ref.graph.nodes]
    if a_ops != b_ops:
        diff["ops"].append(f"ours {a_ops} != reference {b_ops}")
    ai, bi = ours.graph.initializers, ref.graph.initializers
    for name in sorted(set(ai) & set(bi)):
        diff["initializers"] += diff_tensor(name, ai[name], bi[name])
    av = {v.name: v for v in ours.graph.value_info}
    bv = {v.name: v for v in ref.graph.value_info}
    for name in sorted(set(av) & set(bv)):
        diff["value_info"] += diff_value_info(name, av[name], bv[name])
    diff["only_ours"] = sorted((set(ai) - set(bi)) | (set(av) - set(bv)))
    diff["only_ref"] = sorted((set(bi) - set(ai)) | (set(bv) - set(av)))
    return diff
