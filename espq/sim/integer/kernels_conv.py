"""Conv (regular, depthwise, 1-D), Gemm and MatMul with ESP-DL's integer arithmetic (esp_dl_facts.md §4.2).

Per output pixel and output channel n:

1. ``acc = bias[n] + Σ_(kh, kw, c) x·w`` (padding taps skipped = zero padding); the bias of the aligned
   channels is first cut to the target's ``bias_bits`` (ESP32-S3 keeps the low 20 bits of int8
   biases, §4.3);
2. ``y = shift_and_round(acc, e_out − e_in − e_w[n])`` with the target rounding (per-channel ``e_w`` on
   P4 only), fused ReLU, saturation.

Accumulator widths (§4.2 table): when a channel's partial sums can leave the accumulator (bound
``|bias| + Σ|w|·max|x|``), saturating targets (P4, S3) run that channel MAC by MAC in kernel order
(bias, then kh, kw, c) with saturation after every MAC; C targets wrap (plain int32/int64). Otherwise
the sum is computed at once as a float convolution, exact because every partial sum stays below
2^24 (float32) or 2^53 (float64).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from espq.errors import EspdlFormatError, UnsupportedOpError
from espq.espdl import layout as espdl_layout
from espq.ir.limits import check_shape
from espq.sim.integer.base import IntContext, QTensor, int_bits, register_int
from espq.targets import Rounding, Target

_FLOAT32_EXACT = 1 << 24
_FLOAT64_EXACT = 1 << 53


def _sign_extend(v: np.ndarray, bits: int) -> np.ndarray:
    """Keep the low ``bits`` bits of int64 values as a two's complement number (wraps)."""
    if bits >= 64:
        return v
    m = np.int64(1) << np.int64(bits)
    half = np.int64(1) << np.int64(bits - 1)
    return ((v + half) & (m - 1)) - half


def _param_values(ctx: IntContext, idx: int, what: str) -> np.ndarray | None:
    t = ctx.params.get(idx)
    if t is None:
        if idx < len(ctx.node.inputs) and ctx.node.inputs[idx]:
            raise EspdlFormatError(
                f"node '{ctx.node.name}' ({ctx.node.op_type}): {what} '{ctx.node.inputs[idx]}' must be an "
                "initializer (ESP-DL reads it as a parameter)"
            )
        return None
    return t.values().astype(np.int64)


def _weight_exponents(ctx: IntContext, n_out: int) -> np.ndarray:
    """Per-channel (or broadcast per-tensor) weight exponents; per-channel only where the target has it."""
    t = ctx.params[1]
    exps = np.asarray(t.exponents or [0], dtype=np.int64)
    if exps.size > 1:
        if not ctx.target.is_per_channel(ctx.node.op_type):
            raise UnsupportedOpError(
                f"node '{ctx.node.name}' ({ctx.node.op_type}): weight '{t.name}' has per-channel exponents, "
                f"which {ctx.target.name} does not support (esp_dl_facts.md §4.2: S3/C kernels read an "
                "unset shift); re-export with per-tensor weights for this target"
            )
        if exps.size != n_out:
            raise EspdlFormatError(
                f"node '{ctx.node.name}': weight '{t.name}' has {exps.size} exponents for {n_out} channels"
            )
        return exps
    return np.full(n_out, exps[0], dtype=np.int64)


def _fused_relu(ctx: IntContext, bits: int) -> bool:
    act = ctx.attr("activation", "Linear")
    if act in ("Linear", "None", None, ""):
        return False
    if act == "Relu":
        return True
    if act in ("LeakyRelu", "PRelu") and bits in ctx.target.fused_prelu_as_relu_bits:
        return True  # S3 int8 selects the ReLU kernel with an unset (zero) alpha (§4.2)
    raise UnsupportedOpError(
        f"node '{ctx.node.name}' ({ctx.node.op_type}): fused activation '{act}' has no kernel epilogue on "
        f"{ctx.target.name} (esp_dl_facts.md §4.2); only Linear and Relu are fused"
    )


def _channel_acc_bits(target: Target, bits: int, n_out: int, depthwise: bool) -> tuple[np.ndarray, int]:
    """Accumulator width per output channel and the number of 'aligned' channels."""
    a = target.weight_block.get(bits, 0)
    aligned = n_out if depthwise or not a else n_out // a * a
    acc = np.full(n_out, target.accumulator_bits_for(bits, leftover=True), dtype=np.int64)
    acc[:aligned] = target.accumulator_bits_for(bits)
    return acc, aligned


Taps = list[tuple[np.ndarray, np.ndarray]]
#: (weight tensor or None for "exact sums", bias tensor or None, dtype) -> float sums [..., N]
LinearOp = Callable[[torch.Tensor, torch.Tensor | None, torch.dtype], torch.Tensor]


def _effective_bias(
    target: Target, bits: int, bias: np.ndarray | None, n_out: int, depthwise: bool
) -> np.ndarray:
    """The bias as the kernel sees it: aligned channels cut to ``bias_bits`` (S3 int8: 20 bits, §4.3)."""
    _, aligned = _channel_acc_bits(target, bits, n_out, depthwise)
    b = np.zeros(n_out, dtype=np.int64) if bias is None else bias.astype(np.int64).copy()
    b[:aligned] = _sign_extend(b[:aligned], target.bias_bits[bits])
    return b


def mac_requant(
    ctx: IntContext,
    bits: int,
    w: np.ndarray,
    bias: np.ndarray | None,
    depthwise: bool,
    xmax: float,
    shift: np.ndarray,
    out_dtype: np.dtype,
    linear: LinearOp,
    fine_bound: Callable[[np.ndarray], torch.Tensor],
    taps: Callable[[], Taps],
    cache: dict | None,
) -> np.ndarray:
    """``saturate(relu(shift_and_round(bias + Σ x·w, shift)))`` per output channel (last axis).

    ``w``: int64 weights with the output channel on axis 0. ``linear(weight, bias, dtype)`` evaluates the
    op (conv / matmul) in float with a float weight shaped like ``w``. When no partial sum can leave the
    accumulator, the shift is folded into the weights and bias (``w·2^-s``, ``b·2^-s`` plus ½ for
    half-up): every partial sum is then an integer below 2^23 (float32) or 2^52 (float64) times a
    power of two, so the float evaluation is exact and one ``round``/``floor`` gives the result.
    Otherwise the exact sums go through :func:`accumulate` (saturation / wrapping) first.
    """
    n_out = w.shape[0]
    relu = _fused_relu(ctx, bits)
    shift = shift.astype(np.int64)
    b = _effective_bias(ctx.target, bits, bias, n_out, depthwise)
    w_abs = np.abs(w).reshape(n_out, -1).sum(axis=1).astype(np.float64)
    total = np.abs(b).astype(np.float64) + w_abs * xmax
    acc_bits, _ = _channel_acc_bits(ctx.target, bits, n_out, depthwise)
    limit = (np.int64(1) << (acc_bits - 1)) - 1
    half_up = ctx.target.rounding is Rounding.HALF_UP
    if np.any((acc_bits < 64) & (total > limit)):
        dt = _float_dtype(float((w_abs * xmax).max(initial=0)))
        exact = linear(torch.from_numpy(w).to(dt), None, dt)
        acc = accumulate(ctx.target, bits, exact, bias, depthwise, w_abs * xmax, fine_bound, taps)
        return requantize_acc(ctx, acc, shift, relu, out_dtype)
    small = float(total.max(initial=0)) < _FLOAT32_EXACT // 2 and int(shift.max(initial=0)) <= 23
    dt = torch.float32 if small else _float_dtype(2 * float(total.max(initial=0)))
    key = (dt, tuple(shift.tolist()))
    if cache is not None and cache.get("key") == key:
        w_s, b_s = cache["w"], cache["b"]
    else:
        scale = np.ldexp(1.0, -shift)
        offset = np.where(half_up & (shift > 0), 0.5, 0.0)
        w_s = torch.from_numpy(w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).to(dt)
        b_s = torch.from_numpy(b * scale + offset).to(dt)
        if cache is not None:
            cache.update(key=key, w=w_s, b=b_s)
    y = linear(w_s, b_s, dt)
    y = torch.floor(y) if half_up else torch.round(y)
    info = np.iinfo(out_dtype)
    y = y.clamp_(0 if relu else info.min, info.max)
    return y.to(torch.int16 if info.bits == 16 else torch.int8).numpy()


def accumulate(
    target: Target,
    bits: int,
    exact: torch.Tensor,
    bias: np.ndarray | None,
    depthwise: bool,
    coarse_bound: np.ndarray,
    fine_bound: Callable[[np.ndarray], torch.Tensor],
    taps: Callable[[], Taps],
) -> torch.Tensor:
    """``bias + exact`` ([..., N] exact integer sums) through the target's accumulator → float64.

    ``coarse_bound[n]`` bounds |Σ x·w| of channel n over all pixels; ``fine_bound(sel)`` gives the
    per-pixel bound ``Σ |x|·|w|`` of the channels ``sel``; ``taps()`` lists the MACs in kernel order as
    (x_view [..., C], w [C, N]) pairs (depthwise: (x_view [..., N], w [N])). Saturating targets redo
    MAC by MAC only the pixels/channels whose partial sums can leave the accumulator; wrapping (C)
    targets wrap the final sum, which equals wrapping every MAC.
    """
    n_out = exact.shape[-1]
    acc_bits, _ = _channel_acc_bits(target, bits, n_out, depthwise)
    b = _effective_bias(target, bits, bias, n_out, depthwise)
    total = np.abs(b).astype(np.float64) + coarse_bound
    acc = exact.to(torch.float64) + torch.from_numpy(b.astype(np.float64))
    limit = (np.int64(1) << (acc_bits - 1)) - 1
    need = np.nonzero((acc_bits < 64) & (total > limit))[0]
    if not need.size:
        return acc
    if not target.accumulator_saturates:
        part = acc[..., need].numpy().astype(np.int64)
        for k, n in enumerate(need):
            part[..., k] = _sign_extend(part[..., k], int(acc_bits[n]))
        acc[..., need] = torch.from_numpy(part.astype(np.float64))
        return acc
    fine = fine_bound(need).to(torch.float64) + torch.from_numpy(np.abs(b[need]).astype(np.float64))
    rows = (fine > torch.from_numpy(limit[need].astype(np.float64))).reshape(-1, need.size).any(dim=1)
    rows = np.nonzero(rows.numpy())[0]
    if rows.size:
        flat = acc.reshape(-1, n_out)
        sat = _saturating_macs(taps(), rows, b[need], need, int(acc_bits[need].min()), depthwise)
        sub = flat[torch.from_numpy(rows)]
        sub[:, torch.from_numpy(need)] = torch.from_numpy(sat.astype(np.float64))
        flat[torch.from_numpy(rows)] = sub
        acc = flat.reshape(acc.shape)
    return acc


def _saturating_macs(
    taps: Taps, rows: np.ndarray, bias: np.ndarray, sel: np.ndarray, bits: int, depthwise: bool
) -> np.ndarray:
    """MAC by MAC with saturation to ``bits`` after each one (bias first, then taps in order), for the
    flattened output positions ``rows`` and channels ``sel``: int64 [rows, sel]."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    acc = np.broadcast_to(bias, (rows.size, sel.size)).astype(np.int64)
    for xv, w in taps:
        xr = xv.reshape(-1, xv.shape[-1])[rows].astype(np.int64)
        if depthwise:
            acc = np.clip(acc + xr[:, sel] * w[sel], lo, hi)
            continue
        ws = w[:, sel]
        for c in range(xr.shape[-1]):
            acc = np.clip(acc + xr[:, c : c + 1] * ws[c], lo, hi)
    return acc


def requantize_acc(
    ctx: IntContext, acc: torch.Tensor, shift: np.ndarray, relu: bool, dtype: np.dtype
) -> np.ndarray:
    """``shift_and_round`` per output channel (last axis) of exact float64 integers, fused ReLU, saturation.

    ``round(acc · 2^-s)`` (half even) / ``floor((acc + 2^(s-1)) · 2^-s)`` (half up) equal the integer
    shift because the power-of-two scaling is exact; a left shift saturating to the accumulator type and
    then to int8/int16 equals saturating to int8/int16 directly (§4.1, §4.2 step 3).
    """
    shift = shift.astype(np.int64)
    scale = torch.from_numpy(np.ldexp(1.0, -shift))
    if ctx.target.rounding is Rounding.HALF_EVEN:
        y = torch.round(acc * scale)
    else:
        offset = torch.from_numpy(np.where(shift > 0, np.ldexp(1.0, np.maximum(shift, 1) - 1), 0.0))
        y = torch.floor((acc + offset) * scale)
    info = np.iinfo(dtype)
    y = y.clamp_(0 if relu else info.min, info.max)
    return y.to(torch.int16 if info.bits == 16 else torch.int8).numpy()


def _float_dtype(bound: float) -> torch.dtype:
    if bound < _FLOAT32_EXACT:
        return torch.float32
    if bound < _FLOAT64_EXACT:
        return torch.float64
    raise UnsupportedOpError(f"MAC sums bounded by {bound:.3g} exceed exact float64 evaluation")


def _tensor(a: np.ndarray, dt: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.require(a, requirements=["C", "W"])).to(dt)


def dense(
    ctx: IntContext,
    x: np.ndarray,
    w_nk: np.ndarray,
    bias: np.ndarray | None,
    bits: int,
    shift: np.ndarray,
    out_dtype: np.dtype,
    cache: dict | None,
) -> np.ndarray:
    """Requantised ``bias + x @ w.T``: x [P, K] ints, w [N, K] ints → [P, N] of ``out_dtype``."""
    xmax = float(np.abs(x.astype(np.int32)).max()) if x.size else 0.0
    xs: dict[torch.dtype, torch.Tensor] = {}

    def linear(wt: torch.Tensor, bt: torch.Tensor | None, dt: torch.dtype) -> torch.Tensor:
        if dt not in xs:
            xs[dt] = _tensor(x, dt)
        return F.linear(xs[dt], wt, bt)

    def fine(sel: np.ndarray) -> torch.Tensor:
        # Σ|x|·|w| per row, exact in float32 when the coarse bound allows it
        dt = _float_dtype(float(np.abs(w_nk).sum(axis=1).max(initial=0)) * xmax)
        store = cache if cache is not None else {}
        if ("abs", dt) not in store:
            store[("abs", dt)] = _tensor(np.abs(w_nk), dt)
        return (_tensor(np.abs(x.astype(np.int64)), dt) @ store[("abs", dt)].T)[:, torch.from_numpy(sel)]

    def taps() -> Taps:
        return [(x, np.ascontiguousarray(w_nk.T))]

    return mac_requant(ctx, bits, w_nk, bias, False, xmax, shift, out_dtype, linear, fine, taps, cache)


def _pairs(v, n: int, default: int) -> list[int]:
    v = list(v) if v is not None else [default] * n
    return [int(a) for a in v]


def _cached_weight(ctx: IntContext, op: str, depthwise: bool = False) -> np.ndarray:
    """The filter in ONNX layout as int64, decoded once per node (kept in the node state)."""
    cache = ctx.state.setdefault("_weight", {})
    name = ctx.node.inputs[1]
    if name not in cache:
        cache[name] = ctx.params[1].to_original(op, depthwise).astype(np.int64)
    return cache[name]


@register_int("Conv")
def conv(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Conv 2-D (NHWC) / 1-D (NWC), regular or depthwise, int8/int16."""
    x = inputs[0]
    if x is None or x.data.dtype not in (np.int8, np.int16):
        raise UnsupportedOpError(f"node '{ctx.node.name}' (Conv): input must be an int8/int16 activation")
    bits = int_bits(x.data.dtype)
    if ctx.params.get(1) is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Conv): the weight must be an initializer")
    group = int(ctx.attr("group", 1))
    depthwise = group != 1
    w = _cached_weight(ctx, "Conv", depthwise)
    one_d = x.data.ndim == 3
    if w.ndim == 3:
        w = w[:, :, None]
    xd = x.data[:, None] if one_d else x.data  # [B, H, W, C]
    n_out, c_per_group, kh, kw = w.shape
    if depthwise and c_per_group != 1:
        raise UnsupportedOpError(
            f"node '{ctx.node.name}' (Conv): group={group} with {c_per_group} input channels per group; "
            "ESP-DL treats every group != 1 as depthwise (esp_dl_facts.md §3.2)"
        )
    nsp = 1 if one_d else 2
    pads = _pairs(ctx.attr("pads"), 2 * nsp, 0)
    strides = _pairs(ctx.attr("strides"), nsp, 1)
    dil = _pairs(ctx.attr("dilations"), nsp, 1)
    if one_d:
        pads, strides, dil = [0, pads[0], 0, pads[1]], [1] + strides, [1] + dil
    pt, pl, pb, pr = pads
    check_shape(
        f"node '{ctx.node.name}' (Conv) padded input",
        [xd.shape[0], xd.shape[1] + pt + pb, xd.shape[2] + pl + pr, xd.shape[3]],
    )
    groups = group if depthwise else 1
    xs: dict[torch.dtype, torch.Tensor] = {}

    def run_conv(xt: torch.Tensor, wt: torch.Tensor, bt: torch.Tensor | None) -> torch.Tensor:
        if (pt, pl) == (pb, pr):
            out = F.conv2d(xt, wt, bt, stride=strides, padding=(pt, pl), dilation=dil, groups=groups)
        else:
            out = F.conv2d(F.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=strides, dilation=dil, groups=groups)
        return out.permute(0, 2, 3, 1)

    def linear(wt: torch.Tensor, bt: torch.Tensor | None, dt: torch.dtype) -> torch.Tensor:
        if dt not in xs:
            xs[dt] = torch.from_numpy(np.require(xd, requirements=["W"])).permute(0, 3, 1, 2).to(dt)
        return run_conv(xs[dt], wt, bt)

    def fine(sel: np.ndarray) -> torch.Tensor:
        # Σ|x|·|w| per pixel, exact in float32 when the coarse bound allows it
        dt = _float_dtype(float(np.abs(w).reshape(n_out, -1).sum(axis=1).max()) * xmax)
        key = ("abs", dt)
        if key not in wcache:
            wcache[key] = torch.from_numpy(np.abs(w)).to(dt)
        xa = torch.from_numpy(np.abs(xd.astype(np.int32))).permute(0, 3, 1, 2).to(dt)
        return run_conv(xa, wcache[key], None)[..., torch.from_numpy(sel)]

    def taps() -> Taps:
        xp = np.pad(xd, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
        ho = (xp.shape[1] - dil[0] * (kh - 1) - 1) // strides[0] + 1
        wo = (xp.shape[2] - dil[1] * (kw - 1) - 1) // strides[1] + 1
        out = []
        for i in range(kh):
            for j in range(kw):
                hs, ws_ = i * dil[0], j * dil[1]
                view = xp[:, hs : hs + (ho - 1) * strides[0] + 1 : strides[0]]
                view = view[:, :, ws_ : ws_ + (wo - 1) * strides[1] + 1 : strides[1]]
                out.append((view, w[:, 0, i, j] if depthwise else np.ascontiguousarray(w[:, :, i, j].T)))
        return out

    wcache = ctx.state.setdefault("_abs_weight", {})
    xmax = float(np.abs(xd.astype(np.int32)).max()) if xd.size else 0.0
    shift = ctx.out_exponents[0] - x.exponent - _weight_exponents(ctx, n_out)
    bias = _param_values(ctx, 2, "bias")
    cache = ctx.state.setdefault("_scaled", {})
    y = mac_requant(ctx, bits, w, bias, depthwise, xmax, shift, x.data.dtype, linear, fine, taps, cache)
    if one_d:
        y = y[:, 0]
    return [QTensor(np.ascontiguousarray(y), ctx.out_exponents[0])]


@register_int("Gemm")
def gemm(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """Gemm: input flattened to rows × C, weight [1, 1, C, N] run as a 1×1 conv (§4.2)."""
    x = inputs[0]
    if x is None or x.data.dtype not in (np.int8, np.int16):
        raise UnsupportedOpError(f"node '{ctx.node.name}' (Gemm): input must be an int8/int16 activation")
    if int(ctx.attr("transA", 0)) or int(ctx.attr("transB", 0)):
        raise UnsupportedOpError(f"node '{ctx.node.name}' (Gemm): transA/transB must be 0 in ESP-DL files")
    bits = int_bits(x.data.dtype)
    wt = ctx.params.get(1)
    if wt is None:
        raise EspdlFormatError(f"node '{ctx.node.name}' (Gemm): the weight must be an initializer")
    w = _cached_weight(ctx, "Gemm")  # [N, C]
    n_out, c = w.shape
    x2 = x.data.reshape(-1, c)
    shift = ctx.out_exponents[0] - x.exponent - _weight_exponents(ctx, n_out)
    cache = ctx.state.setdefault("_scaled", {})
    y = dense(ctx, x2, w, _param_values(ctx, 2, "bias"), bits, shift, x.data.dtype, cache)
    return [QTensor(y.reshape(x.shape[:-1] + (n_out,)), ctx.out_exponents[0])]


def _matmul_rhs(ctx: IntContext, b: QTensor | None, bits: int) -> tuple[np.ndarray, int]:
    """The right operand as [..., K, N] int64 plus its exponent."""
    if b is None:
        t = ctx.params.get(1)
        if t is None:
            raise EspdlFormatError(f"node '{ctx.node.name}' (MatMul): missing right operand")
        arr = t.to_original("MatMul") if len(t.dims) >= 2 else t.values().reshape(t.dims)
        return arr.astype(np.int64), (t.exponents[0] if t.exponents else 0)
    data = b.data.astype(np.int64)
    if ctx.attr("input1_layout", "packed") == "native_kn" or data.ndim < 2:
        return data, b.exponent
    # older exports repack a dynamic operand into the weight layout at run time (esp_ppq_facts.md §4)
    k, n = data.shape[-2:]
    tag = ctx.target.weight_layout_tag(bits, n, depthwise=False)
    return espdl_layout.to_original(data.reshape(-1), list(data.shape), tag, "MatMul"), b.exponent


@register_int("MatMul")
def matmul(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """MatMul with a constant or activation right operand, batch broadcasting, no bias (§4.2)."""
    a = inputs[0]
    if a is None or a.data.dtype not in (np.int8, np.int16):
        raise UnsupportedOpError(f"node '{ctx.node.name}' (MatMul): input 0 must be an int8/int16 activation")
    bits = int_bits(a.data.dtype)
    bmat, e_b = _matmul_rhs(ctx, inputs[1] if len(inputs) > 1 else None, bits)
    am = a.data.astype(np.int64)
    a1, b1 = am.ndim == 1, bmat.ndim == 1
    if a1:
        am = am[None, :]
    if b1:
        bmat = bmat[:, None]
    batch = np.broadcast_shapes(am.shape[:-2], bmat.shape[:-2])
    am = np.broadcast_to(am, batch + am.shape[-2:])
    bmat = np.broadcast_to(bmat, batch + bmat.shape[-2:])
    m, k = am.shape[-2:]
    n = bmat.shape[-1]
    shift = np.full(n, ctx.out_exponents[0] - a.exponent - e_b, dtype=np.int64)
    out = np.empty(batch + (m, n), dtype=a.data.dtype)
    for idx in np.ndindex(*batch):
        w_nk = np.ascontiguousarray(bmat[idx].T)
        out[idx] = dense(ctx, np.ascontiguousarray(am[idx]), w_nk, None, bits, shift, a.data.dtype, None)
    if a1:
        out = out[..., 0, :]
    if b1:
        out = out[..., 0]
    return [QTensor(out, ctx.out_exponents[0])]
