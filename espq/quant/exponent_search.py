"""Exponent search: refine calibrated power-of-two exponents among their neighbours.

* Activations: per exponent group, the observer's exponent ``e`` and its neighbours ``e ± 1`` are scored
  by the error they cause at the next computing ops (Conv/Gemm/MatMul reading a tensor of the group): each
  such op runs on the float activation rounded at the candidate exponent and on the float activation
  itself (float weights), over one batch of calibration inputs; the candidate with the lowest summed
  noise-to-signal ratio wins (ties keep the observer's choice). Groups that feed no computing op are scored
  by the expected squared error at their own output from the calibration histograms
  (:func:`espq.quant.observers.expected_mse`). Scoring at the next computing op matters: rounding noise
  averages out over a dot product while clipping errors add up, so the local error alone favours
  exponents that clip too much.
* Weights: per tensor (per output channel where the plan is per channel), the minmax exponent and the
  next finer one are scored by the actual rounding error of the values (parameter rounding, saturation);
  the finer one wins when it clips a few outliers but rounds the rest more finely.

Shared specs (Clip bounds, Pad values) and derived bias exponents are recomputed afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from espq.ir import Graph, Node
from espq.ir.spec import OBSERVED, QuantPlan, TensorSpec
from espq.quant.bias_correction import stack_batches
from espq.quant.calibrate import covering_exponent, resolve_dependent_specs
from espq.quant.observers import TensorStats, expected_mse
from espq.quant.plan import PlanSkeleton
from espq.sim.float.executor import run_graph
from espq.sim.float.registry import KERNELS
from espq.targets import Target

ACTIVATION_RADIUS = 1
MEASURED_CONSUMERS = ("Conv", "Gemm", "MatMul")
MAX_ELEMENTS = 1 << 22  # input values of the scoring batch (27 images at 224x224x3, 1365 CIFAR images)


def _merged(stats: dict[str, TensorStats], masters: list[str]) -> TensorStats | None:
    if not masters or any(m not in stats for m in masters):
        return None
    out = stats[masters[0]]
    for m in masters[1:]:
        out = out.merge(stats[m])
    return out


def best_activation_exponent(
    stats: TensorStats, exponent: int, bits: int, radius: int = ACTIVATION_RADIUS
) -> int:
    """The exponent within ``exponent ± radius`` with the lowest expected squared error."""
    errs = {e: expected_mse(stats, e, bits) for e in range(exponent - radius, exponent + radius + 1)}
    best = min(errs, key=lambda e: errs[e])
    return best if errs[best] < errs[exponent] else exponent


def rounding_error(values: np.ndarray, exponent: np.ndarray, bits: int, axis: int | None) -> np.ndarray:
    """Sum of squared rounding errors of ``values`` at ``exponent`` (per channel along ``axis``)."""
    v = np.asarray(values, dtype=np.float64)
    v = (
        v.reshape(1, -1)
        if axis is None or v.ndim == 0
        else np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    )
    scale = np.exp2(np.asarray(exponent, dtype=np.float64)).reshape(-1, 1)
    q = np.clip(np.round(v / scale), -(1 << (bits - 1)), (1 << (bits - 1)) - 1) * scale  # half-to-even
    return ((q - v) ** 2).sum(axis=1)


def best_weight_exponents(
    values: np.ndarray, exponent: int | tuple[int, ...], bits: int, axis: int | None
) -> int | tuple[int, ...]:
    """Per channel, the minmax exponent or the next finer one, whichever rounds ``values`` better."""
    e = np.atleast_1d(np.asarray(exponent, dtype=np.int64))
    coarse = rounding_error(values, e, bits, axis if isinstance(exponent, tuple) else None)
    fine = rounding_error(values, e - 1, bits, axis if isinstance(exponent, tuple) else None)
    chosen = np.where(fine < coarse, e - 1, e)
    return tuple(int(x) for x in chosen) if isinstance(exponent, tuple) else int(chosen[0])


def measured_errors(
    graph: Graph,
    plan: QuantPlan,
    target: Target,
    batches: list[dict[str, np.ndarray]],
    radius: int = ACTIVATION_RADIUS,
    max_elements: int = MAX_ELEMENTS,
) -> dict[str, dict[int, float]]:
    """Per group, the summed noise-to-signal ratio at the next computing ops for each candidate exponent."""
    from espq.sim.fakequant import fake_quant

    readers: dict[str, list[tuple[TensorSpec, Node]]] = {}
    for node in graph.nodes:
        params = node.inputs[1:]
        if (
            node.op_type in MEASURED_CONSUMERS
            and node.inputs
            and node.inputs[0] not in graph.initializers
            and all(not t or t in graph.initializers for t in params)
        ):
            spec = plan.input_spec(node.name, 0, node.inputs[0])
            if spec is not None and spec.group is not None and spec.exponent is not None:
                readers.setdefault(node.inputs[0], []).append((spec, node))
    errors: dict[str, dict[int, float]] = {}
    rounding = target.rounding.value

    def score(tensor_name: str, x: torch.Tensor) -> None:
        for spec, node in readers.get(tensor_name, ()):
            rest = [
                None if not t else torch.as_tensor(np.array(graph.initializers[t])) for t in node.inputs[1:]
            ]
            ref = KERNELS[node.op_type](node, [x, *rest])[0]
            signal = float(torch.square(ref).sum()) + 1e-30  # float32 squares, pairwise-summed
            errs = errors.setdefault(spec.group, {})
            for e in range(int(spec.exponent) - radius, int(spec.exponent) + radius + 1):
                q = fake_quant(x, TensorSpec(bits=spec.bits, exponent=e), rounding)
                out = KERNELS[node.op_type](node, [q, *rest])[0]
                errs[e] = errs.get(e, 0.0) + float(out.sub_(ref).square_().sum()) / signal

    def hook(node: Node, index: int, tensor: torch.Tensor) -> torch.Tensor:
        if tensor.is_floating_point():
            score(node.outputs[index], tensor)
        return tensor

    feeds = stack_batches(batches, max_elements)
    with torch.no_grad():
        for name in graph.inputs:
            score(name, feeds[name].float())
        run_graph(graph, feeds, outputs=list(graph.outputs), hook=hook)
    return errors


def search_exponents(
    skeleton: PlanSkeleton,
    plan: QuantPlan,
    graph: Graph,
    stats: dict[str, TensorStats],
    target: Target,
    batches: list[dict[str, np.ndarray]],
) -> QuantPlan:
    """Refine the exponents of a calibrated ``plan`` in place (module docstring); returns it."""
    measured = measured_errors(graph, plan, target, batches) if batches else {}
    group_exp: dict[str, int] = {}
    for gid, masters in skeleton.group_masters.items():
        spec = next((s for s in [*plan.tensors.values(), *plan.requant.values()] if s.group == gid), None)
        if spec is None or spec.exponent is None:
            continue
        if gid in measured:
            errs = measured[gid]
            best = min(errs, key=lambda e: errs[e])
            group_exp[gid] = best if errs[best] < errs[int(spec.exponent)] else int(spec.exponent)
        elif (merged := _merged(stats, masters)) is not None:
            group_exp[gid] = best_activation_exponent(merged, int(spec.exponent), spec.bits)
        if gid in group_exp and gid in skeleton.group_inputs:  # Add/Sub: keep covering the inputs
            group_exp[gid] = covering_exponent(
                skeleton, gid, group_exp[gid], stats, spec.bits, plan.calib_algorithm
            )

    def regroup(spec):
        return spec.with_exponent(group_exp[spec.group]) if spec.group in group_exp else spec

    plan.tensors = {k: regroup(v) for k, v in plan.tensors.items()}
    plan.requant = {k: regroup(v) for k, v in plan.requant.items()}
    for name, spec in list(plan.tensors.items()):
        if spec.source == OBSERVED and spec.group is None and name in graph.initializers:
            plan.tensors[name] = spec.with_exponent(
                best_weight_exponents(graph.initializers[name], spec.exponent, spec.bits, spec.axis)
            )
    resolve_dependent_specs(plan, graph)
    return plan


__all__ = [
    "best_activation_exponent",
    "best_weight_exponents",
    "measured_errors",
    "rounding_error",
    "search_exponents",
]
