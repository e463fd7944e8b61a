"""Per-chip latency model: per-node cost features → predicted on-chip milliseconds (issue 19 item 4).

A node's cost is described by :class:`NodeCost` (MACs, bytes moved, quant type; computed from an `.espdl`
by :func:`espq.espdl.cost.node_costs`). :func:`feature_vector` maps one node onto the cost groups of
:data:`espq.targets.latency_table.GROUPS`, which follow ESP-DL's kernel choice
(esp-dl:esp-dl/dl/base/dl_base_conv2d.cpp): MACs of the 1x1 / 3x3 / other-size kernels (Gemm and MatMul
run as 1x1 convolutions, dl_module_gemm.hpp / dl_module_matmul.hpp) and of depthwise convolutions, the
extra cost of "unaligned" kernels (channels not a multiple of 16) and of int16, weight bytes read by MAC
ops, activation bytes moved by every integer op except views, elements of float-fallback nodes, a
per-node overhead;
a chip's coefficients (ms per unit of each group, non-negative, fitted by ``bench/latency_fit.py`` on
Espressif's published model-zoo latencies, provenance in the table module) turn the features into
milliseconds. The model is linear, so a node's share of the total is its own prediction.

The model predicts single-core ``Model::run`` time (ESP-DL's default ``RUNTIME_MODE_SINGLE_CORE``,
esp-dl:esp-dl/dl/model/include/dl_model_base.hpp), without pre-/post-processing. Chips without published
latencies (the plain-C family, ESP32-S31) have no coefficients: their estimate is NaN with a note, never
a guess.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from espq.errors import ConfigError
from espq.targets import latency_table
from espq.targets.cost import MAC_OPS, VIEW_OPS, NodeCost, node_costs
from espq.targets.infer import infer_target
from espq.targets.memory import activation_memory
from espq.targets.registry import get_target


@dataclass
class LatencyEstimate:
    """Predicted single-core latency and memory of one model on one chip.

    ``ms``: total predicted milliseconds (NaN when the chip has no fitted coefficients, see ``note``);
    ``per_node``: ``(name, op_type, ms)`` per node in graph order; ``param_bytes``: sum of the parameter
    tensors' data bytes; ``peak_activation_bytes``: the largest sum of simultaneously live activation
    buffers; ``peak_memory_bytes``: their sum; ``target``: the chip the coefficients are for.
    """

    ms: float
    per_node: list[tuple[str, str, float]]
    param_bytes: int
    peak_activation_bytes: int
    peak_memory_bytes: int
    target: str | None = None
    note: str = ""
    macs: int = 0
    groups: dict[str, float] = field(default_factory=dict)


def _aligned(cost: NodeCost) -> bool:
    step = latency_table.CHANNEL_ALIGN
    return cost.in_channels % step == 0 and cost.out_channels % step == 0 and cost.in_channels > 0


def feature_vector(cost: NodeCost) -> np.ndarray:
    """The node's amounts per cost group, in :data:`latency_table.GROUPS` order."""
    v = np.zeros(len(latency_table.GROUPS))
    idx = latency_table.GROUP_INDEX
    v[idx["nodes"]] = 1.0
    if cost.float_fallback:
        v[idx["float_elements"]] = cost.elements + cost.macs
    elif cost.op_type in MAC_OPS:
        v[idx["weight_bytes"]] = cost.param_bytes
        if cost.depthwise:
            key = "dw_macs"
        else:
            key = {1: "conv1x1_macs", 9: "conv3x3_macs"}.get(cost.kernel, "conv_other_macs")
        # PIE's 128-bit registers hold 16 int8 or 8 int16 lanes: an int16 MAC is at least two int8 ones
        v[idx[key]] = cost.macs * (2 if cost.int16 else 1)
        if not cost.depthwise and not _aligned(cost):
            v[idx["unaligned_extra_macs"]] = cost.macs
        if cost.int16:
            v[idx["int16_extra_macs"]] = cost.macs
        v[idx["moved_bytes"]] = cost.input_bytes + cost.output_bytes
    elif cost.op_type not in VIEW_OPS:
        v[idx["moved_bytes"]] = cost.input_bytes + cost.output_bytes
    return v


def kernel_cost(k: latency_table.KernelLatency) -> NodeCost:
    """The :class:`NodeCost` of one published int8 kernel timing (a Conv with bias, channel-last)."""
    c, h, w = k.input_chw
    n, cg, kh, kw = k.filter_nckk
    oh = (h + 2 * k.pads[0] - kh) // k.strides[0] + 1
    ow = (w + 2 * k.pads[1] - kw) // k.strides[1] + 1
    macs = oh * ow * n * cg * kh * kw
    return NodeCost(
        name=f"conv{kh}x{kw}_{c}x{h}x{w}",
        op_type="Conv",
        quant_type="S8",
        macs=macs,
        input_bytes=c * h * w,
        output_bytes=n * oh * ow,
        param_bytes=n * cg * kh * kw + 4 * n,
        elements=c * h * w + n * oh * ow,
        depthwise=k.depthwise,
        kernel=kh * kw,
        in_channels=c,
        out_channels=n,
    )


def coefficients(target: str) -> np.ndarray | None:
    """The fitted ms-per-unit coefficients of ``target`` (GROUPS order), None when it has none."""
    row = latency_table.COEFFICIENTS.get(get_target(target).name)
    return None if row is None else np.array([row[g] for g in latency_table.GROUPS], dtype=np.float64)


def build_estimate(
    costs: Sequence[NodeCost],
    target: str | None,
    param_bytes: int,
    peak_activation_bytes: int,
) -> LatencyEstimate:
    """Combine per-node costs with ``target``'s coefficients into a :class:`LatencyEstimate`."""
    name = get_target(target).name if target is not None else None
    coef = coefficients(name) if name is not None else None
    feats = [feature_vector(c) for c in costs]
    note = ""
    if coef is None:
        note = (
            f"no published ESP-DL latencies for {name or 'an unknown target'} to fit a model on; "
            f"fitted targets: {', '.join(sorted(latency_table.COEFFICIENTS))}"
        )
        per_node = [(c.name, c.op_type, math.nan) for c in costs]
    else:
        per_node = [(c.name, c.op_type, float(f @ coef)) for c, f in zip(costs, feats)]
    total = np.sum(feats, axis=0) if feats else np.zeros(len(latency_table.GROUPS))
    return LatencyEstimate(
        ms=math.nan if coef is None else float(sum(ms for _n, _o, ms in per_node)),
        per_node=per_node,
        param_bytes=param_bytes,
        peak_activation_bytes=peak_activation_bytes,
        peak_memory_bytes=param_bytes + peak_activation_bytes,
        target=name,
        note=note,
        macs=sum(c.macs for c in costs),
        groups={g: float(x) for g, x in zip(latency_table.GROUPS, total)},
    )


def estimate(model: Any, target: str | None = None) -> LatencyEstimate:
    """Predicted single-core latency and peak memory of an :class:`~espq.espdl.model.EspdlModel`.

    ``target``: a chip name or alias; None takes the file's ``metadata_props["target"]``, else the target
    inferred from its weights (:func:`espq.targets.infer.infer_target`). ``param_bytes`` is the sum of the
    initializers' data bytes, ``peak_activation_bytes`` the largest sum of simultaneously live activation
    buffers (:func:`espq.targets.memory.activation_memory`). For a path or the file's bytes use
    :func:`espq.espdl.cost.estimate` (this layer does not read files). Targets without published
    latencies give ``ms`` NaN and a ``note``.
    """
    if isinstance(model, (str, os.PathLike, bytes, bytearray, memoryview)):
        raise ConfigError(
            f"espq.targets.latency.estimate takes an EspdlModel, not {type(model).__name__}: "
            "use espq.espdl.cost.estimate(path_or_bytes, target) or espq.espdl.read(...) first"
        )
    if target is None:
        target = infer_target(model).name
    g = model.graph
    return build_estimate(
        node_costs(model),
        target,
        param_bytes=sum(len(t.raw) for t in g.initializers.values()),
        peak_activation_bytes=activation_memory(model)["activation_peak_bytes"],
    )


__all__ = [
    "LatencyEstimate",
    "build_estimate",
    "coefficients",
    "estimate",
    "feature_vector",
    "kernel_cost",
]
