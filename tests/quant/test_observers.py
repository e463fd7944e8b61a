"""Observers: exponent selection on known distributions, streaming histogram behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from espq.errors import ConfigError
from espq.quant.observers import (
    TensorStats,
    exponent_kl,
    exponent_minmax,
    exponent_mse,
    exponent_percentile,
    observe_exponent,
    parameter_percentile_absmax,
    weight_exponents,
)


def stats_of(x: np.ndarray, chunks: int = 1) -> TensorStats:
    s = TensorStats()
    for part in np.array_split(x, chunks):
        s.update(torch.as_tensor(part))
    return s


def test_minmax_exponent_is_espppq_ceil_rule():
    # scale = 2*absmax/255; absmax 1.0 -> scale 0.00784 -> 2^-7 (0.0078125 is below, so ceil gives -6)
    assert exponent_minmax(1.0, 8) == math.ceil(math.log2(2 / 255)) == -6
    assert exponent_minmax(127.5 / 128, 8) == -7  # exactly representable range [-128, 127] * 2^-7 ... 127.5
    assert exponent_minmax(0.0, 8) == math.ceil(math.log2(1e-8))
    assert exponent_minmax(1.0, 16) == math.ceil(math.log2(2 / 65535))


def test_streaming_histogram_matches_single_update():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, 5000), rng.normal(0, 3.0, 5000)]).astype(np.float32)
    one = stats_of(x)
    many = stats_of(x, chunks=7)  # range grows while streaming; bins merge pairwise
    assert one.range == many.range == 16.0
    assert one.absmax == many.absmax
    assert many.hist.sum() == x.size
    # bins merged on growth are sums of finer bins, so coarse views agree (up to float32 edge effects)
    assert float((one.hist.view(-1, 64).sum(1) - many.hist.view(-1, 64).sum(1)).abs().max()) <= 2


@pytest.mark.parametrize("case", ["normal", "zeros", "bin_edges", "deep_negatives", "non_positive"])
def test_relu_statistics_from_the_input_equal_those_of_the_output(case):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2.0, 20000).astype(np.float32)
    if case == "zeros":
        x[rng.random(x.size) < 0.4] = 0.0
    elif case == "bin_edges":  # exactly on histogram bin edges (range 16, 16384 bins: 1/1024 wide)
        x = np.round(x * 1024) / 1024
    elif case == "deep_negatives":  # far below -range: beyond the negative bins, clamped
        x[::7] = -1e6
    elif case == "non_positive":
        x = -np.abs(x)
    direct, from_input = TensorStats(), TensorStats()
    for part in np.array_split(x, 3):
        t = torch.as_tensor(part)
        direct.update(torch.relu(t))
        from_input.update(t, relu=True)
    assert torch.equal(direct.hist, from_input.hist)
    assert (direct.min, direct.max, direct.count, direct.range) == (
        from_input.min,
        from_input.max,
        from_input.count,
        from_input.range,
    )
    assert from_input.min >= 0.0 and from_input.hist.sum() == x.size


def test_merge_is_union():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 3000).astype(np.float32), rng.normal(0, 5, 3000).astype(np.float32)
    merged = stats_of(a).merge(stats_of(b))
    both = stats_of(np.concatenate([a, b]))
    assert merged.absmax == both.absmax and merged.count == both.count
    assert merged.hist.sum() == both.hist.sum() == 6000
    # only values within float32 rounding of a bin edge may land in the neighbouring bin
    assert float((merged.hist - both.hist).abs().max()) <= 2


def test_kl_clips_outliers_minmax_does_not():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 200_000).astype(np.float32)
    x[:5] = 60.0  # rare outliers
    s = stats_of(x)
    e_mm = observe_exponent(s, 8, "minmax")
    e_kl = observe_exponent(s, 8, "kl")
    assert e_mm == exponent_minmax(60.0, 8) == -1
    assert e_kl <= e_mm - 2  # KL ignores the 5 outliers
    assert 127 * 2.0**e_kl >= 2.5  # ...but keeps the bulk of a unit Gaussian


def test_percentile_ignores_tail():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, 100_000).astype(np.float32)
    x[:3] = 100.0
    s = stats_of(x)
    assert exponent_percentile(s, 8) == exponent_minmax(1.0, 8)


def test_mse_prefers_finer_step_for_heavy_tail():
    rng = np.random.default_rng(4)
    x = rng.laplace(0, 0.05, 100_000).astype(np.float32)
    x[0] = 4.0
    s = stats_of(x)
    assert exponent_mse(s, 8) < exponent_minmax(4.0, 8)
    # a uniform distribution that fits the minmax range without clipping: minmax is optimal
    u = stats_of(rng.uniform(-0.9, 0.9, 100_000).astype(np.float32))
    assert exponent_mse(u, 8) == exponent_minmax(u.absmax, 8)


def test_kl_at_16_bits_falls_back_to_minmax():
    s = stats_of(np.linspace(-3, 3, 1000, dtype=np.float32))
    assert observe_exponent(s, 16, "kl") == exponent_minmax(3.0, 16)
    assert exponent_kl(s, 16) == exponent_minmax(3.0, 16)


def test_large_tensors_are_subsampled_for_the_histogram_only(monkeypatch):
    import espq.quant.observers as observers

    monkeypatch.setattr(observers, "MAX_HIST_SAMPLES", 1 << 16)
    x = torch.linspace(-3.0, 2.0, 1_000_003)
    s = TensorStats()
    s.update(x)
    assert s.min == -3.0 and s.max == 2.0 and s.count == 1_000_003  # exact
    assert abs(float(s.hist.sum()) - 1_000_003) / 1_000_003 < 0.01  # counts scaled by the stride
    assert abs(exponent_percentile(s, 8) - exponent_minmax(3.0, 8)) <= 1


def test_unknown_observer():
    with pytest.raises(ConfigError, match="kl, minmax, percentile, mse"):
        observe_exponent(TensorStats(), 8, "entropy")


def test_weight_exponents_per_channel():
    w = np.zeros((3, 2, 1, 1), np.float32)
    w[0] = 1.0
    w[1] = 0.1
    w[2] = -8.0
    assert weight_exponents(w, 8, axis=0) == (
        exponent_minmax(1.0, 8),
        exponent_minmax(0.1, 8),
        exponent_minmax(8.0, 8),
    )
    assert weight_exponents(w, 8, axis=None) == exponent_minmax(8.0, 8)


def test_per_tensor_weights_use_esppq_percentile():
    # n = 36,864 (a 64x64x3x3 conv): k_max = int(n * 0.9999) + 1 = 36,861 -> the 4th largest value counts
    w = np.full(36864, 0.01, np.float32)
    w[:4] = [0.9, 0.7, 0.5, 0.13]  # the three largest are clipped away
    w[4] = -0.8  # the smallest too (k_min = 4 lands on 0.01, so the low side is 0)
    assert parameter_percentile_absmax(w) == pytest.approx(0.13)
    assert weight_exponents(w.reshape(64, 64, 3, 3), 8, axis=None) == exponent_minmax(0.13, 8) == -9
    # at 16 bits ESP-PPQ's setting observes parameters with minmax: nothing is clipped
    assert weight_exponents(w.reshape(64, 64, 3, 3), 16, axis=None) == exponent_minmax(0.9, 16) == -15
    # below ~10,000 elements the percentile is the exact extreme
    small = np.array([0.5, -2.0, 0.25], np.float32)
    assert parameter_percentile_absmax(small) == 2.0
    # the low side: k_min = int(n * 1e-4) + 1 = 4 -> the 4th smallest value
    w2 = np.full(36864, 0.01, np.float32)
    w2[:4] = [-0.9, -0.8, -0.7, -0.3]
    assert parameter_percentile_absmax(w2) == pytest.approx(0.3)
