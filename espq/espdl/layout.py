"""Undo the target-specific weight layouts of Conv/Gemm/MatMul filters (esp_dl_facts.md §2.5,
esp_ppq_facts.md §4.6).

Notation: N output channels, C input channels (per group), S = product of the kernel's spatial
sizes, ``a`` the block width (16 for int8 ``(N/16)…C16``, 8 for int16 ``(N/8)…C8``).

Stored byte orders (``layout ==> …`` annotation in the tensor's doc_string):

* ``(N/a)HWCa`` / ``(N/a)WCa`` (P4, S3), regular conv, dims [kH, kW, C, N] / [kW, C, N]: for each
  block b < N//a, for s, for c, the a channels b·a…b·a+a−1; then the N mod a leftover channels
  in plain n, s, c order (``_UNALIGNED`` suffix when N mod a ≠ 0). Legacy spelling ``N16HWC16``.
* same annotation, depthwise conv, dims [kH, kW, N, 1]: aligned blocks as above with C = 1,
  leftover channels in s, n order (channels innermost).
* ``NHWC`` / ``NWC`` (C targets), regular: plain n, s, c. ``HWCN`` / ``WCN``, depthwise: s, n.
* Gemm: the [N, C] weight is a 1×1 conv filter, dims [1, 1, C, N]. MatMul with a constant
  operand: each [C, N] slice of dims [..., C, N] is laid out like a Gemm filter.
"""

from __future__ import annotations

import math
import re

import numpy as np

from espq.errors import EspdlFormatError

_BLOCKED = re.compile(r"(?:\(N/(\d+)\)|N(\d+))(H?W)C(\d+)")


def parse_layout(layout: str | None) -> tuple[str, int]:
    """Classify a layout annotation: ("blocked", a), ("plain", 0) for NHWC/NWC,
    ("channel_last", 0) for HWCN/WCN, or ("natural", 0) for anything else (UNK, None)."""
    if not layout:
        return "natural", 0
    base = layout.removesuffix("_UNALIGNED")
    m = _BLOCKED.fullmatch(base)
    if m:
        a = int(m.group(1) or m.group(2))
        if a == int(m.group(4)) and a > 0:
            return "blocked", a
    if base in ("NHWC", "NWC"):
        return "plain", 0
    if base in ("HWCN", "WCN"):
        return "channel_last", 0
    return "natural", 0


def _regular(v: np.ndarray, kind: str, a: int, n: int, s: int, c: int) -> np.ndarray:
    """[N, S, C] from a regular (group 1) filter."""
    if kind == "plain":
        return v.reshape(n, s, c)
    if kind == "channel_last":
        return v.reshape(s, c, n).transpose(2, 0, 1)
    na = n // a * a
    head = v[: na * s * c].reshape(n // a, s, c, a).transpose(0, 3, 1, 2).reshape(na, s, c)
    tail = v[na * s * c :].reshape(n - na, s, c)
    return np.concatenate([head, tail], axis=0)


def _depthwise(v: np.ndarray, kind: str, a: int, n: int, s: int) -> np.ndarray:
    """[N, S] from a depthwise filter."""
    if kind == "plain":
        return v.reshape(n, s)
    if kind == "channel_last":
        return v.reshape(s, n).T
    na = n // a * a
    head = v[: na * s].reshape(n // a, s, a).transpose(0, 2, 1).reshape(na, s)
    tail = v[na * s :].reshape(s, n - na).T
    return np.concatenate([head, tail], axis=0)


def to_original(
    values: np.ndarray,
    dims: list[int],
    layout: str | None,
    op_type: str | None = None,
    depthwise: bool | None = None,
    name: str = "?",
) -> np.ndarray:
    """Return ``values`` (flat, stored order) in ONNX layout.

    * layout UNK/absent/unknown: ``values.reshape(dims)`` (scalar dims [] → shape ()).
    * ``op_type="Gemm"`` (dims [1, 1, C, N]): [N, C], i.e. ONNX ``B`` for ``transB=1``
      (``y = x @ result.T``).
    * ``op_type="MatMul"``, or rank-2 dims without op_type: [..., C, N] (the constant operand).
    * Conv (op_type "Conv" or None), rank 4 → [N, C, kH, kW]; rank 3 → [N, C, kW]. Depthwise
      (dims [..., N, 1]) → [N, 1, kH, kW] / [N, 1, kW]. ``depthwise=None`` infers it from
      dims[-1] == 1 < dims[-2]; pass it explicitly for a regular conv with one output channel
      and ≥ 16 inputs, whose dims look the same (:meth:`EspdlModel.original_weight` does so).
    """
    kind, a = parse_layout(layout)
    dims = [int(d) for d in dims]
    numel = math.prod(dims)
    if values.size != numel:
        raise EspdlFormatError(f"tensor '{name}': {values.size} values stored but dims {dims} need {numel}")
    if kind == "natural":
        return values.reshape(dims)
    bad = EspdlFormatError(
        f"tensor '{name}': dims {dims} do not fit layout '{layout}' for op {op_type or 'Conv'}; "
        "expected [kH, kW, C, N] / [kW, C, N] (Conv), [1, 1, C, N] (Gemm) or [..., C, N] (MatMul)"
    )
    if op_type == "MatMul" or (op_type is None and len(dims) == 2):
        if len(dims) < 2:
            raise bad
        c, n = dims[-2:]
        batch = dims[:-2]
        slices = values.reshape(-1, c * n)
        out = [_regular(sl, kind, a, n, 1, c).reshape(n, c).T for sl in slices]
        return np.stack(out).reshape(batch + [c, n])
    if op_type == "Gemm":
        if len(dims) != 4 or dims[0] != 1 or dims[1] != 1:
            raise bad
        c, n = dims[2], dims[3]
        return _regular(values, kind, a, n, 1, c).reshape(n, c)
    if len(dims) not in (3, 4):
        raise bad
    spatial = dims[:-2]
    s = math.prod(spatial)
    if depthwise is None:
        depthwise = dims[-1] == 1 and dims[-2] > 1
    if depthwise:
        n = dims[-2]
        if dims[-1] != 1:
            raise EspdlFormatError(
                f"tensor '{name}': grouped conv filter dims {dims} with {dims[-1]} channels per group; "
                "only depthwise filters (one input channel per group) are supported"
            )
        return _depthwise(values, kind, a, n, s).reshape([n, 1] + spatial)
    c, n = dims[-2], dims[-1]
    t = _regular(values, kind, a, n, s, c).reshape([n] + spatial + [c])
    return np.moveaxis(t, -1, 1)
