"""Per-chip latency model: per-node cost features → predicted on-chip milliseconds (issue 19 item 4).

A node's cost is described by :class:`NodeCost` (MACs, bytes moved, quant type; computed from an `.espdl`
by :func:`espq.espdl.cost.node_costs`). :func:`feature_vector` maps one node onto the cost groups of
:data:`espq.targets.latency_table.GROUPS` (int8 MACs of standard / depthwise convolutions and of Gemm/MatMul,
int16 MACs, bytes moved by the other integer ops, elements of float-fallback nodes, a per-node overhead);
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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from espq.targets import latency_table
from espq.targets.registry import get_target

#: ops whose output is a view of the input (no data moved; esp_dl_facts.md §5.1 "unchanged buffer").
VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
#: ops priced by multiply-accumulates.
MAC_OPS = frozenset({"Conv", "Gemm", "MatMul"})


@dataclass(frozen=True)
class NodeCost:
    """Cost features of one node.

    ``macs``: multiply-accumulates (Conv/Gemm/MatMul; 0 elsewhere); ``input_bytes`` / ``output_bytes``:
    activation bytes read / written (parameters excluded); ``param_bytes``: bytes of the node's
    initializer inputs (weights, bias, LUT); ``elements``: activation elements read + written;
    ``quant_type``: "S8" / "S16" / "F32" or None; ``depthwise``: a grouped Conv with one input channel per
    group; ``int16`` / ``float_fallback``: the node runs at 16 bit / in float.
    """

    name: str
    op_type: str
    quant_type: str | None
    macs: int
    input_bytes: int
    output_bytes: int
    param_bytes: int
    elements: int
    depthwise: bool = False
    int16: bool = False
    float_fallback: bool = False


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


def feature_vector(cost: NodeCost) -> np.ndarray:
    """The node's amounts per cost group, in :data:`latency_table.GROUPS` order."""
    v = np.zeros(len(latency_table.GROUPS))
    idx = latency_table.GROUP_INDEX
    v[idx["nodes"]] = 1.0
    if cost.float_fallback:
        v[idx["float_elements"]] = cost.elements + cost.macs
    elif cost.op_type in MAC_OPS:
        if cost.int16:
            key = "macs_s16"
        elif cost.op_type != "Conv":
            key = "gemm_macs_s8"
        else:
            key = "dw_macs_s8" if cost.depthwise else "conv_macs_s8"
        v[idx[key]] = cost.macs
    elif cost.op_type not in VIEW_OPS:
        v[idx["moved_bytes"]] = cost.input_bytes + cost.output_bytes
    return v


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


__all__ = [
    "LatencyEstimate",
    "MAC_OPS",
    "NodeCost",
    "VIEW_OPS",
    "build_estimate",
    "coefficients",
    "feature_vector",
]
