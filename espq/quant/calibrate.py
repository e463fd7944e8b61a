"""Calibration: one pass over the data collects every statistic, then exponents are resolved.

The forward passes run with fake-quantized weights and float activations, as ESP-PPQ does
(esp_ppq_facts.md §2.4): weight rounding is part of what the activation ranges see.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from espq.errors import ConfigError
from espq.ir import Graph, Node
from espq.ir.spec import DERIVED, FIXED, OBSERVED, SHARED, QuantPlan, TensorSpec
from espq.quant.observers import TensorStats, expected_mse, observe_exponent, weight_exponents
from espq.quant.plan import PlanSkeleton
from espq.sim.float.executor import run_graph
from espq.sim.memory import reuse_freed_memory
from espq.targets import NONNEGATIVE_SHIFT_OPS


def collect_statistics(
    graph: Graph,
    tensors: Iterable[str],
    feeds: Iterator[dict[str, np.ndarray]],
    total: int | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> dict[str, TensorStats]:
    """Run ``graph`` over ``feeds`` once, filling a :class:`TensorStats` for each name in ``tensors``.

    Names may be graph inputs, node outputs or initializers (observed from their values).
    """
    wanted = list(dict.fromkeys(tensors))
    stats = {t: TensorStats() for t in wanted}
    for t in wanted:
        if t in graph.initializers:
            stats[t].update_array(graph.initializers[t])
    activations = {t for t in wanted if t not in graph.initializers}
    input_names = [t for t in graph.inputs if t in activations]
    # a ReLU's output statistics come from its input (TensorStats.update(relu=True): same values, faster)
    relu_outputs_of: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.op_type == "Relu" and node.outputs[0] in activations and graph.producer(node.inputs[0]):
            relu_outputs_of.setdefault(node.inputs[0], []).append(node.outputs[0])
    from_input = {t for outs in relu_outputs_of.values() for t in outs}

    def hook(node: Node, index: int, tensor: torch.Tensor) -> torch.Tensor:
        name = node.outputs[index]
        if not tensor.is_floating_point():
            return tensor
        for relu_output in relu_outputs_of.get(name, ()):
            stats[relu_output].update(tensor, relu=True)
        if name in activations and name not in from_input:
            stats[name].update(tensor)
        return tensor

    bar = tqdm(total=total, desc="calibrating", unit="batch", disable=None if progress else True, leave=False)
    with reuse_freed_memory():  # large activations: no fresh pages faulted in per tensor (espq.sim.memory)
        for batch in feeds:
            torch_feeds = {k: torch.as_tensor(v) for k, v in batch.items()}
            for name in input_names:
                stats[name].update(torch_feeds[name])
            with torch.no_grad():
                run_graph(graph, torch_feeds, outputs=list(graph.outputs), device=device, hook=hook)
            bar.update(1)
    bar.close()
    return stats


def _merged(stats: dict[str, TensorStats], masters: list[str]) -> TensorStats:
    out = stats[masters[0]]
    for m in masters[1:]:
        out = out.merge(stats[m])
    return out


#: An Add/Sub exponent above the output's is taken only when its estimated error is at most this
#: fraction of the output-fitted exponent's (a clear win: the inputs would be clipped, not just rounded).
COVER_GAIN = 0.5


def covering_exponent(
    skeleton: PlanSkeleton, gid: str, exponent: int, stats: dict[str, TensorStats], bits: int, algorithm: str
) -> int:
    """The exponent of Add/Sub group ``gid``: ``exponent`` (fitted to the output's range), or a larger
    one, up to what the aligned inputs need, whose estimated output error is at most
    :data:`COVER_GAIN` times ``exponent``'s.

    ESP-DL adds/subtracts raw codes saturated at the output's exponent (esp_dl_facts.md §4.4); ESP-PPQ
    fits that exponent to the output's range ('Align to Output'). When the output is narrower than the
    operands (``x - mean(x)`` of a decomposed LayerNorm), both operands saturate to the same code and
    the output becomes 0. The error of ``sat(q(a) ± q(b))`` at exponent ``e`` is estimated from the
    calibration histograms as the sum of each input's expected squared error at ``e`` (rounding and
    clipping) plus the output's (its saturation).
    """
    inputs = [t for t in skeleton.group_inputs.get(gid, ()) if t in stats and stats[t].count]
    masters = [t for t in skeleton.group_masters.get(gid, ()) if t in stats and stats[t].count]
    if not inputs or not masters:
        return exponent
    need = max(observe_exponent(stats[t], bits, algorithm) for t in inputs)
    if need <= exponent:
        return exponent
    out = _merged(stats, masters)

    def error(e: int) -> float:
        return sum(expected_mse(stats[t], e, bits) for t in inputs) + expected_mse(out, e, bits)

    base = error(exponent)
    best = min(range(exponent + 1, need + 1), key=lambda e: (error(e), e))
    return best if error(best) <= COVER_GAIN * base else exponent


def resolve_exponents(
    skeleton: PlanSkeleton,
    graph: Graph,
    stats: dict[str, TensorStats],
    algorithm_for: dict[str, str] | None = None,
    fixed_exponents: dict[str, int] | None = None,
) -> QuantPlan:
    """Fill every exponent of ``skeleton.plan`` from activation ``stats`` and parameter values.

    ``algorithm_for`` optionally maps a group id (its master tensor) to an observer other than the
    plan's ``calib_algorithm``; ``fixed_exponents`` maps a group id to an exponent that replaces the
    observed one (focused quantization, :mod:`espq.quant.focused`).
    """
    plan = skeleton.plan
    algorithm_for = algorithm_for or {}
    group_exp: dict[str, int] = {}
    group_bits = {
        s.group: s.bits for s in list(plan.tensors.values()) + list(plan.requant.values()) if s.group
    }
    for gid, masters in skeleton.group_masters.items():
        algo = algorithm_for.get(gid) or skeleton.group_algorithms.get(gid) or plan.calib_algorithm
        group_exp[gid] = observe_exponent(_merged(stats, masters), group_bits[gid], algo)
        if gid in skeleton.group_inputs:
            group_exp[gid] = covering_exponent(skeleton, gid, group_exp[gid], stats, group_bits[gid], algo)
    group_exp.update(fixed_exponents or {})

    def resolve(spec: TensorSpec, name: str | None) -> TensorSpec:
        if spec.group is not None:
            return spec.with_exponent(group_exp[spec.group])
        if spec.source == OBSERVED and name is not None:
            return spec.with_exponent(weight_exponents(graph.initializers[name], spec.bits, spec.axis))
        return spec

    plan.tensors = {k: resolve(v, k) for k, v in plan.tensors.items()}
    plan.requant = {k: resolve(v, None) for k, v in plan.requant.items()}
    resolve_dependent_specs(plan, graph)
    for name, spec in plan.tensors.items():
        if spec.source == FIXED and spec.exponent is None:
            raise ConfigError(f"fixed spec of '{name}' has no exponent")
    return plan


def resolve_dependent_specs(plan: QuantPlan, graph: Graph) -> None:
    """Re-fill, in place, the specs that follow other specs' exponents: parameters shared with their
    node's input (Clip bounds, Pad value) take that input's exponent, then biases are derived.
    Call after any activation or weight exponent changed."""
    raise_negative_shifts(plan, graph)
    for name, spec in list(plan.tensors.items()):
        if spec.source == SHARED and spec.group is None:
            node_name, idx = spec.ref[0].rsplit(":", 1)
            node = graph.node(node_name)
            src = plan.input_spec(node_name, int(idx), node.inputs[int(idx)])
            plan.tensors[name] = spec.with_exponent(src.exponent)
    for name, spec in list(plan.tensors.items()):
        if spec.source == DERIVED:
            plan.tensors[name] = derive_bias_spec(plan, graph, spec)


def raise_negative_shifts(plan: QuantPlan, graph: Graph) -> int:
    """Raise, in place, every Conv/Gemm/MatMul/Mul output exponent below ``e_in + e_w`` (max over
    channels) to that value, with its whole exponent group; returns the number of raises.

    ESP-DL's kernels for these ops shift the accumulator right by ``mac_shift = e_out - e_in - e_w``
    (``dl_base.hpp``) and cannot shift left: the ESP32-S3 int8 conv kernels take a negative value as
    the per-channel marker (``blti a8, 0, .L11cn_per_channel`` in ``dl_tie728_s8_conv2d.S``; the
    per-channel vector is NULL on S3, esp_dl_facts.md §4.2); the P4 kernels use it as the right-shift
    amount of ``esp.srcmb.s8.qacc`` (``dl_esp32p4_s8.S``); only the C path (``shift_and_round``,
    ``dl_tool.cpp``) shifts left. ESP-PPQ logs an error and exports anyway (§3.2).
    A lower output exponent carries no precision the accumulator has (its unit is
    ``2^(e_in + e_w)``): it comes from an all-zero calibration range (``Sub(x, x)``, a Conv whose fused
    Relu saw only negatives), so raising it loses nothing."""

    def exps(spec: TensorSpec | None) -> list[int] | None:
        if spec is None or spec.exponent is None:
            return None
        e = spec.exponent
        return [int(v) for v in e] if isinstance(e, tuple) else [int(e)]

    raised = 0
    for _ in range(len(graph.nodes) + 1):  # a raise may raise a later node's input: repeat until stable
        changed = False
        for node in graph.nodes:
            if node.op_type not in NONNEGATIVE_SHIFT_OPS or len(node.inputs) < 2 or not node.outputs:
                continue
            e_in = exps(plan.input_spec(node.name, 0, node.inputs[0]))
            e_w = exps(plan.input_spec(node.name, 1, node.inputs[1]))
            out = plan.tensors.get(node.outputs[0])
            e_out = exps(out)
            if e_in is None or e_w is None or e_out is None or len(e_in) != 1 or len(e_out) != 1:
                continue
            need = e_in[0] + max(e_w)
            if e_out[0] >= need:
                continue
            if out.group is None:
                plan.tensors[node.outputs[0]] = out.with_exponent(need)
            else:
                for d in (plan.tensors, plan.requant):
                    for k, v in d.items():
                        if v.group == out.group:
                            d[k] = v.with_exponent(need)
            raised += 1
            changed = True
        if not changed:
            break
    return raised


def derive_bias_spec(plan: QuantPlan, graph: Graph, spec: TensorSpec) -> TensorSpec:
    """Bias exponent = input exponent + weight exponent (per channel when the weight is)."""
    node_name, idx = spec.ref[0].rsplit(":", 1)
    node = graph.node(node_name)
    e_in = plan.input_spec(node_name, int(idx), node.inputs[int(idx)]).exponent
    e_w = plan.tensors[spec.ref[1]].exponent
    if isinstance(e_w, tuple):
        return TensorSpec(
            bits=spec.bits, exponent=tuple(int(e_in) + e for e in e_w), axis=0, source=DERIVED, ref=spec.ref
        )
    return TensorSpec(bits=spec.bits, exponent=int(e_in) + int(e_w), axis=None, source=DERIVED, ref=spec.ref)
