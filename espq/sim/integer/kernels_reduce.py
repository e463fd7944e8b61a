"""Reduce* kernels of the integer runner: ReduceL1, ReduceL2, ReduceMin, ReduceMax, ReduceSum,
ReduceProd, ReduceMean, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.

esp_dl_facts.md §4.11 and ``dl_module_reduce_*.hpp`` (``ReduceBase``): axes come from the INT64
initializer input 1 (or an ``axes`` attribute); no axes → every axis unless ``noop_with_empty_axes``;
``keepdims`` defaults to 1. The reduced elements are visited in C order of the reduced axes, which is
the accumulation order the float sums below follow. Per op (int8 accumulates in int32 / float, int16
in int64 / float / double):

* ReduceSum / ReduceL1: integer sum (of |x|), ``shift_and_round(acc, e_out − e_in)``, saturate.
* ReduceSumSquare: integer Σx², ``shift_and_round(acc, e_out − 2·e_in)``, saturate.
* ReduceMean: integer sum, ``round(float(sum) · 2^e_in / (float)count · 2^−e_out)`` in float32.
* ReduceMax / ReduceMin: integer max / min, no rescale.
* ReduceL2: ``sqrt_newton(float(Σx²) · 2^(2·e_in))``, then ``round(· 2^−e_out)``.
* ReduceProd: int8 float32 product of ``x · 2^e_in``; int16 double product; ``round(· 2^−e_out)``.
* ReduceLogSum: integer sum, ``logf(float(sum · 2^e_in))``, ``round(· 2^−e_out)``.
* ReduceLogSumExp: int8 float32 sum of a table ``expf(2^e_in·(k − 128))``; int16 float32 sum of
  ``expf(x · 2^e_in)``; ``logf`` then ``round(· 2^−e_out)``.

float32 nodes run the same reductions on float values without requantisation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from espq.errors import EspdlFormatError
from espq.sim.integer.base import IntContext, QTensor, register_int
from espq.sim.integer.kernels_act import (
    activation_input,
    out_dtype,
    out_exponent,
    round_f32,
    round_f64,
    saturate,
    scale_f32,
)
from espq.targets.rounding import shift_round

F32 = np.float32
_EN = F32(0.00001)  # dl::math EN, the convergence bound of sqrt_newton


def sqrt_newton(x: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """``dl::math::sqrt_newton`` on float32: ``r = (r + x/r)·0.5`` from ``r = x`` until
    ``|r − r_prev| ≤ 1e-5`` (0 for x = 0), element by element."""
    x = np.asarray(x, dtype=F32)
    res = x.copy()
    active = x != 0
    res[~active] = F32(0)
    with np.errstate(all="ignore"):
        for _ in range(max_iter):
            if not active.any():
                break
            new = ((res + x / res) * F32(0.5)).astype(F32)
            done = ~(np.abs(new - res) > _EN)
            res = np.where(active, new, res)
            active &= ~done
    return res


def reduce_axes(ctx: IntContext, inputs: list[QTensor | None], rank: int) -> list[int]:
    """The reduced axes (sorted, non-negative) of a Reduce* node on a ``rank``-D input."""
    p = ctx.params.get(1)
    if p is not None:
        axes = [int(a) for a in p.values()]
    elif len(inputs) > 1 and inputs[1] is not None:
        axes = [int(a) for a in np.asarray(inputs[1].data).reshape(-1)]
    else:
        axes = [int(a) for a in (ctx.attr("axes") or [])]
    if not axes:
        return [] if int(ctx.attr("noop_with_empty_axes", 0)) else list(range(rank))
    out = sorted({a + rank if a < 0 else a for a in axes})
    if out and (out[0] < 0 or out[-1] >= rank):
        raise EspdlFormatError(
            f"node '{ctx.node.name}' ({ctx.node.op_type}): axes {axes} out of range for a {rank}-D input"
        )
    return out


def _grouped(x: np.ndarray, axes: list[int]) -> np.ndarray:
    """``x`` with the kept axes first and the reduced axes flattened (C order) into the last one."""
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.transpose(x, kept + axes)
    return moved.reshape([x.shape[a] for a in kept] + [-1])


def _out_shape(ctx: IntContext, x: np.ndarray, axes: list[int]) -> tuple[int, ...]:
    """ReduceBase::get_output_shape: reduced axes become 1 (keepdims) or vanish; a full reduction
    without keepdims gives ``[1]`` (not the ONNX scalar ``[]`` that the ValueInfo may record)."""
    if int(ctx.attr("keepdims", 1)):
        return tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    shape = tuple(d for a, d in enumerate(x.shape) if a not in axes)
    return shape or (1,)


def _seq(g: np.ndarray, op: Callable[[np.ndarray, np.ndarray], np.ndarray], init: float, dtype) -> np.ndarray:
    """Sequential accumulation over the last axis in ``dtype`` (the C loop order)."""
    acc = np.full(g.shape[:-1], init, dtype=dtype)
    for i in range(g.shape[-1]):
        acc = op(acc, g[..., i]).astype(dtype)
    return acc


def _shifted(ctx: IntContext, acc: np.ndarray, shift: int, x: QTensor) -> np.ndarray:
    acc_bits = 32 if x.data.dtype == np.int8 else 64  # int32_t / int64_t accumulator
    return saturate(shift_round(acc, shift, ctx.rounding, acc_bits=acc_bits), out_dtype(ctx, x))


def _reduce(
    ctx: IntContext,
    inputs: list[QTensor | None],
    quant: Callable[[IntContext, QTensor, np.ndarray], np.ndarray],
    flt: Callable[[np.ndarray], np.ndarray],
) -> list[QTensor]:
    """Common driver: ``quant(ctx, x, grouped_int64)`` for int8/int16, ``flt(grouped_f32)`` for float."""
    x = activation_input(ctx, inputs)
    axes = reduce_axes(ctx, inputs, x.data.ndim)
    shape = _out_shape(ctx, x.data, axes)
    if not axes:  # noop_with_empty_axes: the data pass through
        return [QTensor(x.data.copy(), x.exponent)]
    if x.data.dtype == np.float32:
        out = np.asarray(flt(_grouped(x.data, axes)), dtype=F32)
        return [QTensor(out.reshape(shape), 0)]
    out = quant(ctx, x, _grouped(x.data.astype(np.int64), axes))
    return [QTensor(np.asarray(out).reshape(shape), out_exponent(ctx))]


def _requant_f32(ctx: IntContext, x: QTensor, v: np.ndarray) -> np.ndarray:
    return saturate(
        round_f32(np.asarray(v, F32) * scale_f32(-out_exponent(ctx)), ctx.rounding), out_dtype(ctx, x)
    )


def _f32(g: np.ndarray) -> np.ndarray:
    return np.asarray(g, dtype=F32)


@register_int("ReduceSum")
def reduce_sum(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceSum: integer sum, shift by e_out − e_in with the target rounding."""
    return _reduce(
        ctx,
        inputs,
        lambda c, x, g: _shifted(c, g.sum(-1), out_exponent(c) - x.exponent, x),
        lambda g: _seq(_f32(g), np.add, 0.0, F32),
    )


@register_int("ReduceL1")
def reduce_l1(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceL1: integer Σ|x|, shift by e_out − e_in."""
    return _reduce(
        ctx,
        inputs,
        lambda c, x, g: _shifted(c, np.abs(g).sum(-1), out_exponent(c) - x.exponent, x),
        lambda g: _seq(np.abs(_f32(g)), np.add, 0.0, F32),
    )


@register_int("ReduceSumSquare")
def reduce_sum_square(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceSumSquare: integer Σx², shift by e_out − 2·e_in."""
    return _reduce(
        ctx,
        inputs,
        lambda c, x, g: _shifted(c, (g * g).sum(-1), out_exponent(c) - 2 * x.exponent, x),
        lambda g: _seq(_f32(g) * _f32(g), np.add, 0.0, F32),
    )


def _mean_q(ctx: IntContext, x: QTensor, g: np.ndarray) -> np.ndarray:
    total = g.sum(-1).astype(F32)  # int32/int64 -> float
    v = total * scale_f32(x.exponent) / F32(g.shape[-1]) * scale_f32(-out_exponent(ctx))
    return saturate(round_f32(v, ctx.rounding), out_dtype(ctx, x))


@register_int("ReduceMean")
def reduce_mean(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceMean: ``round(float(sum) · 2^e_in / count · 2^−e_out)`` in float32."""
    return _reduce(ctx, inputs, _mean_q, lambda g: _seq(_f32(g), np.add, 0.0, F32) / F32(g.shape[-1]))


@register_int("ReduceMax")
def reduce_max(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceMax: integer maximum, exponent unchanged."""
    return _reduce(ctx, inputs, lambda c, x, g: g.max(-1).astype(x.data.dtype), lambda g: g.max(-1))


@register_int("ReduceMin")
def reduce_min(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceMin: integer minimum, exponent unchanged."""
    return _reduce(ctx, inputs, lambda c, x, g: g.min(-1).astype(x.data.dtype), lambda g: g.min(-1))


@register_int("ReduceL2")
def reduce_l2(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceL2: ``sqrt_newton(float(Σx²) · 2^(2·e_in))``, requantised in float32."""

    def quant(c: IntContext, x: QTensor, g: np.ndarray) -> np.ndarray:
        sq = (g * g).sum(-1).astype(F32) * scale_f32(2 * x.exponent)
        return _requant_f32(c, x, sqrt_newton(sq))

    return _reduce(ctx, inputs, quant, lambda g: sqrt_newton(_seq(_f32(g) * _f32(g), np.add, 0.0, F32)))


@register_int("ReduceProd")
def reduce_prod(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceProd: int8 float32 product of the dequantised values; int16 double product."""

    def quant(c: IntContext, x: QTensor, g: np.ndarray) -> np.ndarray:
        deq = g.astype(F32) * scale_f32(x.exponent)
        if x.data.dtype == np.int8:
            return _requant_f32(c, x, _seq(deq, np.multiply, 1.0, F32))
        prod = _seq(deq.astype(np.float64), np.multiply, 1.0, np.float64)
        v = prod * np.float64(scale_f32(-out_exponent(c)))
        return saturate(round_f64(v, c.rounding), out_dtype(c, x))

    return _reduce(ctx, inputs, quant, lambda g: _seq(_f32(g), np.multiply, 1.0, F32))


@register_int("ReduceLogSum")
def reduce_log_sum(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceLogSum: integer sum, ``logf(float(sum · 2^e_in))``, requantised in float32."""

    def quant(c: IntContext, x: QTensor, g: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return _requant_f32(c, x, np.log(g.sum(-1).astype(F32) * scale_f32(x.exponent)))

    def flt(g: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.log(_seq(_f32(g), np.add, 0.0, F32))

    return _reduce(ctx, inputs, quant, flt)


@register_int("ReduceLogSumExp")
def reduce_log_sum_exp(ctx: IntContext, inputs: list[QTensor | None]) -> list[QTensor]:
    """ReduceLogSumExp: float32 sum of ``expf`` (an int8 table), ``logf``, requantised in float32."""

    def quant(c: IntContext, x: QTensor, g: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            if x.data.dtype == np.int8:
                table = np.exp(scale_f32(x.exponent) * np.arange(-128, 128, dtype=F32)).astype(F32)
                terms = table[g + 128]
            else:
                terms = np.exp(g.astype(F32) * scale_f32(x.exponent)).astype(F32)
            return _requant_f32(c, x, np.log(_seq(terms, np.add, 0.0, F32)))

    def flt(g: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.log(_seq(np.exp(_f32(g)).astype(F32), np.add, 0.0, F32))

    return _reduce(ctx, inputs, quant, flt)
