"""Parameters to integers and to the target's weight byte order (esp_dl_facts.md §2.4-§2.5,
esp_ppq_facts.md §4.4-§4.6). The inverse transforms are :mod:`espq.espdl.layout`.

Notation: N output channels, C input channels per group, S the product of the kernel's spatial sizes,
``a`` the block width (16 for int8, 8 for int16).

* blocked (P4/S3), regular: for each block b < N//a, for s, for c: channels b·a…b·a+a−1; then the
  N mod a leftover channels in n, s, c order. dims [kH, kW, C, N] (Conv1d [kW, C, N]).
* blocked, depthwise: aligned blocks as above with C = 1; leftovers in s, n order. dims [kH, kW, N, 1].
* plain (C chips): regular n, s, c (``NHWC``); depthwise s, n (``HWCN``).
* Gemm: the logical [N, C] weight is a 1×1 filter, dims [1, 1, C, N]; constant MatMul operand
  [..., C, N]: each [C, N] slice like a Gemm filter, dims unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from espq.errors import UnsupportedOpError
from espq.ir.quant_rules import PARAMETER_ROUNDING
from espq.ir.spec import TensorSpec
from espq.targets import Target
from espq.targets.rounding import dequantize, quantize

if TYPE_CHECKING:
    from espq.export.lower.state import ExportState


# ---------------------------------------------------------------------------- byte orders
def _regular(t: np.ndarray, blocked: bool, a: int) -> np.ndarray:
    """Flat stored order of a regular filter given as [N, S, C]."""
    n, s, c = t.shape
    if not blocked:
        return t.reshape(-1)
    na = n // a * a
    head = t[:na].reshape(n // a, a, s, c).transpose(0, 2, 3, 1).reshape(-1)
    return np.concatenate([head, t[na:].reshape(-1)])


def _depthwise(t: np.ndarray, blocked: bool, a: int) -> np.ndarray:
    """Flat stored order of a depthwise filter given as [N, S]."""
    n, s = t.shape
    if not blocked:
        return t.T.reshape(-1)
    na = n // a * a
    head = t[:na].reshape(n // a, a, s).transpose(0, 2, 1).reshape(-1)
    return np.concatenate([head, t[na:].T.reshape(-1)])


def conv_weight_layout(
    w: np.ndarray, target: Target, bits: int, depthwise: bool
) -> tuple[np.ndarray, list[int], str]:
    """ONNX filter [N, C/g, *k] (1-D or 2-D kernel) -> (flat stored values, dims, layout tag)."""
    if w.ndim not in (3, 4):
        raise UnsupportedOpError(f"Conv filter of rank {w.ndim}: ESP-DL runs 1-D and 2-D convolutions only")
    n, c = w.shape[:2]
    spatial = list(w.shape[2:])
    s = int(np.prod(spatial))
    blocked = target.weight_layout == "blocked"
    a = target.weight_block.get(bits, 0) if blocked else 0
    tag = target.weight_layout_tag(bits, n, depthwise, len(spatial))
    if depthwise:
        return _depthwise(w.reshape(n, s), blocked, a), spatial + [n, 1], tag
    t = np.moveaxis(w, 1, -1).reshape(n, s, c)  # [N, S, C]
    return _regular(t, blocked, a), spatial + [c, n], tag


def gemm_weight_layout(w_cn: np.ndarray, target: Target, bits: int) -> tuple[np.ndarray, list[int], str]:
    """Gemm weight as [C, N] (transB = 0) -> (flat values, [1, 1, C, N], tag)."""
    c, n = w_cn.shape
    blocked = target.weight_layout == "blocked"
    a = target.weight_block.get(bits, 0) if blocked else 0
    flat = _regular(np.ascontiguousarray(w_cn.T).reshape(n, 1, c), blocked, a)
    return flat, [1, 1, c, n], target.weight_layout_tag(bits, n, False)


def matmul_weight_layout(w: np.ndarray, target: Target, bits: int) -> tuple[np.ndarray, list[int], str]:
    """Constant MatMul operand [..., C, N] -> (flat values, same dims, tag)."""
    if w.ndim < 2:
        raise UnsupportedOpError(
            "a constant MatMul operand of rank < 2 has no [C, N] layout; reshape it to 2-D"
        )
    c, n = w.shape[-2:]
    slices = w.reshape(-1, c, n)
    flat = np.concatenate([gemm_weight_layout(sl, target, bits)[0] for sl in slices])
    return flat, [int(d) for d in w.shape], target.weight_layout_tag(bits, n, False)


# ---------------------------------------------------------------------------- integers
def exponent_list(spec: TensorSpec) -> list[int]:
    e = spec.exponent
    return [int(v) for v in e] if isinstance(e, tuple) else [int(e)]


def to_int(value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Round parameter ``value`` to ``spec`` (saturating to ``spec.bits``); int64, same shape.

    Parameters are rounded offline with :data:`espq.ir.quant_rules.PARAMETER_ROUNDING` on every target,
    exactly as the fake-quant simulator rounds them, so the file holds the integers espq evaluated.
    """
    v = np.asarray(value, dtype=np.float64)
    if spec.per_channel:
        if v.ndim == 0:
            v = v.reshape(1)
        return quantize(
            v, np.asarray(spec.exponent, dtype=np.int64), spec.bits, PARAMETER_ROUNDING, spec.axis
        )
    return quantize(v, int(spec.exponent), spec.bits, PARAMETER_ROUNDING)


def param_values(state: ExportState, name: str) -> np.ndarray:
    """The float values the chip sees for parameter ``name`` (int · 2^e when quantized), float32."""
    value = np.asarray(state.graph.initializers[name])
    spec = state.params.get(name)
    if spec is None or spec.exponent is None or not np.issubdtype(value.dtype, np.floating):
        return value.astype(np.float32) if np.issubdtype(value.dtype, np.floating) else value
    q = to_int(value, spec)
    if spec.per_channel:
        out = dequantize(q, np.asarray(spec.exponent, dtype=np.int64), spec.axis)
    else:
        out = dequantize(q, int(spec.exponent))
    return np.asarray(out, dtype=np.float32).reshape(value.shape)
