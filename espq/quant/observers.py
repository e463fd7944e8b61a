"""Streaming tensor statistics and the observers that turn them into power-of-two exponents.

One pass over the calibration data fills a :class:`TensorStats` per tensor: min, max and a
histogram of |x| (from a fixed-stride subsample of large tensors) whose range doubles (merging bin
pairs) whenever a larger value arrives, so no second pass is needed to learn the range first
(ESP-PPQ's KL runs two passes, esp_ppq_facts.md §2.4).

Observers (all return the exponent e of ``value = int * 2**e``):

* ``minmax``: ESP-PPQ's minmax_to_scale_offset: scale = 2·absmax/(2^b − 1), e = ceil(log2 scale).
* ``kl``: ESP-PPQ's KL search (same bins, candidates, smoothing and log10 KL; e = round-half-up of log2).
  The histogram over [0, absmax] is re-binned from the streaming histogram (≥ 2× finer), so results can
  differ from ESP-PPQ's exact two-pass histogram by one candidate in rare near-ties.
* ``percentile``: absmax taken at the 0.9999 quantile of |x|, then as minmax.
* ``mse``: the exponent (among the minmax one and four finer ones) minimising the expected squared
  quantization error of the observed distribution (rounding noise step²/12 inside the range, clipping
  error outside).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from espq.errors import ConfigError

HIST_BINS = 16384
#: values per tensor and batch that enter the histogram (min/max always see every value)
MAX_HIST_SAMPLES = 1 << 22
KL_BINS = 4096
#: negative bins of a ReLU's pre-activation histogram (more negative values share the last one)
NEGATIVE_BINS = HIST_BINS
MIN_SCALE = 1e-8
PERCENTILE = 0.9999
OBSERVERS = ("kl", "minmax", "percentile", "mse")


class TensorStats:
    """Streaming min / max / |x| histogram of one tensor."""

    def __init__(self, bins: int = HIST_BINS):
        self.bins = bins
        self.min = math.inf
        self.max = -math.inf
        self.count = 0
        self.range = 0.0  # histogram covers [0, range]; a power of two once set
        self.hist = torch.zeros(bins, dtype=torch.float64)

    def update(self, x: torch.Tensor, relu: bool = False) -> None:
        """Add the values of ``x`` (any shape, float), or with ``relu`` those of ``max(x, 0)``.

        min/max are exact; the histogram is built from at most :data:`MAX_HIST_SAMPLES` values per call
        (a fixed stride through the flattened tensor, counts scaled by the stride, plus the exact extremes),
        which keeps the statistics pass close to the cost of the forward pass itself.

        ``relu`` gives the same statistics as ``update(torch.relu(x))``, faster: half of a ReLU output is
        exact zeros, and counting them one after another in a single counter is a chain of dependent
        increments. From the pre-activation values the non-positive ones are spread over negative bins
        first and summed into bin 0 afterwards.
        """
        x = x.detach()
        if x.numel() == 0:
            return
        if not x.is_floating_point():
            x = x.float()
        flat = _flat_view(x)  # reductions over an NHWC tensor's logical order are several times slower
        raw_lo, raw_hi = (float(v) for v in torch.aminmax(flat))
        lo, hi = (max(raw_lo, 0.0), max(raw_hi, 0.0)) if relu else (raw_lo, raw_hi)
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += x.numel()
        amax = max(abs(lo), abs(hi))
        if amax > self.range:
            self._grow(amax)
        n = flat.numel()
        if self.range == 0:
            self.hist[0] += n
            return
        # odd stride: on power-of-two channel counts and widths the sample visits every channel and column
        stride = 1 if n <= MAX_HIST_SAMPLES else (n // MAX_HIST_SAMPLES) | 1
        per_bin = self.bins / self.range  # a power of two: the scaling is exact
        sample = torch.mul(flat[::stride], per_bin)
        if relu and raw_lo < 0:
            offset = min(math.ceil(-raw_lo * per_bin), NEGATIVE_BINS)
            if raw_lo * per_bin < -offset:
                sample.clamp_(min=-offset)
            idx = sample.to(torch.int32).add_(offset)  # truncation: (-1, 1) -> the bin of 0
        else:
            if raw_lo < 0:  # (a ReLU with negative inputs took the branch above)
                sample.abs_()
            idx, offset = sample.to(torch.int32), 0
        counts = torch.bincount(idx, minlength=offset + self.bins + 1)
        self.hist.add_(counts[offset : offset + self.bins], alpha=stride)
        if offset:  # non-positive ReLU inputs count in bin 0
            self.hist[0] += counts[:offset].sum() * stride
        if amax * per_bin >= self.bins:  # |x| == range goes to the last bin
            self.hist[self.bins - 1] += counts[offset + self.bins] * stride
        if stride > 1:  # the extremes always count, so a rare outlier is never sampled away
            for v in (abs(lo), abs(hi)):
                self.hist[min(int(v * per_bin), self.bins - 1)] += 1

    def update_array(self, x: np.ndarray) -> None:
        self.update(torch.as_tensor(np.asarray(x, dtype=np.float32)))

    def _grow(self, amax: float) -> None:
        new_range = 2.0 ** math.ceil(math.log2(max(amax, 1e-30)))
        if self.range == 0.0:  # values seen so far were all zero: they stay in bin 0
            self.range = new_range
            return
        factor = int(round(new_range / self.range))
        merged = self.hist.view(-1, factor).sum(dim=1)
        self.hist = torch.cat([merged, torch.zeros(self.bins - merged.numel(), dtype=torch.float64)])
        self.range = new_range

    def merge(self, other: TensorStats) -> TensorStats:
        """Statistics of the union of both tensors' values (a new object)."""
        out = TensorStats(self.bins)
        out.min, out.max = min(self.min, other.min), max(self.max, other.max)
        out.count = self.count + other.count
        for s in (self, other):
            if s.count == 0:
                continue
            if s.range > out.range:
                out._grow(s.range)
            if s.range == 0.0:
                out.hist[0] += s.hist.sum()
                continue
            factor = int(round(out.range / s.range))
            merged = s.hist.view(-1, factor).sum(dim=1)
            out.hist[: merged.numel()] += merged
        return out

    @property
    def absmax(self) -> float:
        if self.count == 0:
            return 0.0
        return max(abs(self.min), abs(self.max))


def _flat_view(x: torch.Tensor) -> torch.Tensor:
    """The elements of ``x`` as a 1-D tensor in memory order (a view for dense tensors, e.g. NHWC)."""
    if x.is_contiguous():
        return x.reshape(-1)
    order = sorted(range(x.dim()), key=lambda d: -x.stride(d))
    return x.permute(order).reshape(-1)


# ---------------------------------------------------------------------------- exponents
def exponent_of_scale(scale: float) -> int:
    """ceil(log2(scale)) with ESP-PPQ's minimum scale (ROUND_UP power of two)."""
    return int(math.ceil(math.log2(max(scale, MIN_SCALE))))


def exponent_minmax(absmax: float, bits: int) -> int:
    """Smallest exponent whose range covers ``absmax`` per ESP-PPQ's minmax rule."""
    scale = 2.0 * absmax / ((1 << bits) - 1)
    return exponent_of_scale(scale)


def _rebin(stats: TensorStats, absmax: float, bins: int) -> np.ndarray:
    """Histogram of |x| over [0, absmax] in ``bins`` equal bins, from the streaming histogram."""
    h = stats.hist.numpy()
    edges = np.linspace(0.0, stats.range, h.size + 1)
    cdf = np.concatenate([[0.0], np.cumsum(h)])
    new_edges = np.linspace(0.0, absmax, bins + 1)
    new_cdf = np.interp(new_edges, edges, cdf)
    out = np.diff(new_cdf)
    out[-1] += max(0.0, cdf[-1] - new_cdf[-1])  # mass at exactly absmax
    return np.maximum(out, 0.0)


def exponent_kl(stats: TensorStats, bits: int) -> int:
    """ESP-PPQ's KL-divergence exponent search (esp_ppq_facts.md §2.4)."""
    absmax = stats.absmax
    q = 1 << (bits - 1)
    bins = KL_BINS
    if absmax <= 0 or bins < q:
        return exponent_minmax(absmax, bits)
    hist = _rebin(stats, absmax, bins)
    skip = int(0.002 * bins)
    hist[:skip] = 0.0
    hist[skip] = 1.0
    total = hist.sum()
    # Per candidate length L: p = hist[:L] with the tail folded into its last bin; the reference q has
    # q groups, each spreading its sum evenly over its non-empty bins. KL(p || q) is computed per group
    # (q groups instead of L bins) from prefix sums; the values are ESP-PPQ's up to float rounding.
    p = hist / total
    plogp = np.concatenate([[0.0], np.cumsum(p * np.log10(p + 1e-30))])
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = hist[i:].sum()
    positive = hist > 0
    best_kl, best_len = math.inf, bins
    for length in range(q, bins + 1, q):
        ratio = length // q
        group_sum = hist[:length].reshape(q, ratio).sum(axis=1)
        nonempty = np.maximum(positive[:length].reshape(q, ratio).sum(axis=1), 1)
        s = group_sum.sum()
        level = group_sum / nonempty / s if s > 0 else group_sum / nonempty  # q's value in a non-empty bin
        p_last = (hist[length - 1] + tail[length]) / total
        entropy = plogp[length - 1] + p_last * math.log10(p_last + 1e-30)
        cross = float(np.dot(p[:length].reshape(q, ratio).sum(axis=1), np.log10(level + 1e-30)))
        q_last = level[-1] if positive[length - 1] else 0.0  # the folded last bin's reference value
        cross += (p_last - p[length - 1]) * math.log10(q_last + 1e-30)
        kl = entropy - cross
        if kl < best_kl:
            best_kl, best_len = kl, length
    scale = max(best_len * (absmax / bins) / q, MIN_SCALE)
    return int(math.floor(math.log2(scale) + 0.5))  # ESP-PPQ rounds log2 half up, not up


def _quantile_abs(stats: TensorStats, p: float) -> float:
    h = stats.hist.numpy()
    cdf = np.cumsum(h)
    if cdf[-1] <= 0:
        return 0.0
    k = np.searchsorted(cdf, p * cdf[-1])
    width = stats.range / h.size
    return min(float((k + 1) * width), stats.absmax)


def exponent_percentile(stats: TensorStats, bits: int, p: float = PERCENTILE) -> int:
    return exponent_minmax(_quantile_abs(stats, p), bits)


def expected_mse(stats: TensorStats, exponent: int, bits: int) -> float:
    """Expected squared quantization error per value at ``exponent`` (histogram model)."""
    h = stats.hist.numpy()
    if stats.range == 0.0:
        return 0.0
    width = stats.range / h.size
    centers = (np.arange(h.size) + 0.5) * width
    step = 2.0**exponent
    clip = ((1 << (bits - 1)) - 0.5) * step
    inside = centers <= clip
    err = np.where(inside, step * step / 12.0, (centers - clip + step / 2) ** 2)
    return float(np.sum(h * err) / max(h.sum(), 1.0))


def exponent_mse(stats: TensorStats, bits: int, candidates: int = 5) -> int:
    e0 = exponent_minmax(stats.absmax, bits)
    errs = {e: expected_mse(stats, e, bits) for e in range(e0 - candidates + 1, e0 + 1)}
    return min(errs, key=lambda e: (errs[e], -e))


def observe_exponent(stats: TensorStats, bits: int, algorithm: str) -> int:
    """Exponent of an activation tensor for ``algorithm`` (kl / minmax / percentile / mse).

    KL needs a histogram with more bins than integer levels; at 16 bits it falls back to minmax
    (ESP-PPQ's 16-bit default is minmax too).
    """
    if algorithm == "kl":
        return exponent_kl(stats, bits) if bits <= 8 else exponent_minmax(stats.absmax, bits)
    if algorithm == "minmax":
        return exponent_minmax(stats.absmax, bits)
    if algorithm == "percentile":
        return exponent_percentile(stats, bits)
    if algorithm == "mse":
        return exponent_mse(stats, bits)
    raise ConfigError(f"unknown calibration algorithm {algorithm!r}; choose one of {', '.join(OBSERVERS)}")


def parameter_percentile_absmax(values: np.ndarray, p: float = PERCENTILE) -> float:
    """absmax of a parameter tensor by ESP-PPQ's percentile observer (esp_ppq_facts.md §2.4).

    ``k_min = max(0, int(n·(1−p))) + 1`` and ``k_max = min(int(n·p), n−1) + 1``; the k-th smallest
    signed values give min and max (clamped to include 0). Tensors under ~10,000 elements reduce to
    their exact min and max; larger ones drop their few most extreme values.
    """
    flat = np.sort(np.asarray(values, dtype=np.float32).reshape(-1))
    n = flat.size
    if n == 0:
        return 0.0
    k_min = max(0, int(n * (1 - p))) + 1
    k_max = min(int(n * p), n - 1) + 1
    lo, hi = min(float(flat[k_min - 1]), 0.0), max(float(flat[k_max - 1]), 0.0)
    return max(abs(lo), abs(hi))


def weight_exponents(values: np.ndarray, bits: int, axis: int | None) -> int | tuple[int, ...]:
    """Exponent of a parameter: per-channel minmax along ``axis``; per tensor, ESP-PPQ's 0.9999
    percentile at 8 bits and minmax at 16 bits.

    ESP-PPQ's espdl setting observes per-channel Conv/Gemm weights (P4) with minmax and, at 8 bits, every
    other parameter (per-tensor weights on S3/C, MatMul/Mul/Add constants, PRelu slopes, LSTM/GRU weights)
    with the 0.9999 percentile (esp_ppq_facts.md §2.4); at 16 bits its setting uses minmax for parameters
    too (App. C; its int16 exports agree). espq follows both, by the parameter's own bit width.
    """
    v = np.asarray(values, dtype=np.float64)
    if axis is None or v.ndim == 0:
        absmax = parameter_percentile_absmax(v) if bits <= 8 else float(np.max(np.abs(v), initial=0.0))
        return exponent_minmax(absmax, bits)
    moved = np.moveaxis(v, axis, 0).reshape(v.shape[axis], -1)
    amax = np.max(np.abs(moved), axis=1) if moved.shape[1] else np.zeros(moved.shape[0])
    return tuple(exponent_minmax(float(a), bits) for a in amax)
