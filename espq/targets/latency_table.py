"""Latency-model data: cost groups, Espressif's published model latencies, fitted coefficients.

Everything here is data; :mod:`espq.targets.latency` applies it. ``bench/latency_fit.py`` refits
:data:`COEFFICIENTS` from :data:`PUBLISHED` (non-negative least squares) and prints this table.
"""

from __future__ import annotations

from types import MappingProxyType

#: cost groups (units): int8 MACs of standard Conv (group 1 or more than one input channel per group),
#: of depthwise Conv, of Gemm/MatMul; MACs of any int16 Conv/Gemm/MatMul; activation bytes read + written
#: by every other integer op except views; elements (+ MACs) of float-fallback nodes; one per node.
GROUPS: tuple[str, ...] = (
    "conv_macs_s8",
    "dw_macs_s8",
    "gemm_macs_s8",
    "macs_s16",
    "moved_bytes",
    "float_elements",
    "nodes",
)
GROUP_INDEX = MappingProxyType({g: i for i, g in enumerate(GROUPS)})

#: ms per unit of each group, per target; targets absent here have no published latencies.
COEFFICIENTS: MappingProxyType[str, MappingProxyType[str, float]] = MappingProxyType({})
