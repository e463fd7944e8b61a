"""Rounding primitives (facts esp_dl §4.1, §3.3) for numpy and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from espq.errors import ConfigError
from espq.targets.rounding import (
    clamp_int,
    dequantize,
    lut16_index,
    quantize,
    round_by_mode,
    round_half_even,
    round_half_up,
    shift_round,
)

BACKENDS = [np.asarray, torch.tensor]


def _np(x) -> np.ndarray:
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _ref_shift(v: int, s: int, mode: str, acc_bits: int = 64) -> int:
    """Python-int reference of tool::shift_and_round."""
    if s <= 0:
        lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
        return min(max(v << -s, lo), hi)
    q, r = divmod(v, 1 << s)  # floor division, r >= 0
    half = 1 << (s - 1)
    if mode == "half_up":
        return q + (r >= half)
    return q + (r > half or (r == half and q % 2 == 1))


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties(backend):
    x = backend([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -2.6, -2.4, 2.4, 2.6])
    assert _np(round_half_even(x)).tolist() == [-2, -2, 0, 0, 2, 2, -3, -2, 2, 3]
    assert _np(round_half_up(x)).tolist() == [-2, -1, 0, 1, 2, 3, -3, -2, 2, 3]
    assert _np(round_by_mode(x, "half_up")).tolist() == _np(round_half_up(x)).tolist()
    assert _np(round_by_mode(x, "half_even")).tolist() == _np(round_half_even(x)).tolist()


def test_unknown_rounding_mode():
    with pytest.raises(ConfigError, match="half_even"):
        round_by_mode(np.zeros(2), "stochastic")


@pytest.mark.parametrize("backend", [np.asarray, lambda a: torch.tensor(a, dtype=torch.int64)])
@pytest.mark.parametrize("mode", ["half_up", "half_even"])
def test_shift_round_exact_on_large_int64(backend, mode):
    rng = np.random.default_rng(0)
    v = rng.integers(-(2**63), 2**63 - 1, size=400, dtype=np.int64, endpoint=True)
    v[:4] = [-(2**63), 2**63 - 1, -(2**40) - 2**19, 2**40 + 2**19]  # extremes and exact ties at s = 20
    for s in (1, 2, 20, 31, 62, 63):
        got = _np(shift_round(backend(v), s, mode)).tolist()
        assert got == [_ref_shift(int(x), s, mode) for x in v]


@pytest.mark.parametrize("backend", BACKENDS)
def test_shift_round_ties_and_negatives(backend):
    v = backend([5, 6, 7, -5, -6, -7, 3, -3])
    assert _np(shift_round(v, 1, "half_up")).tolist() == [3, 3, 4, -2, -3, -3, 2, -1]
    assert _np(shift_round(v, 1, "half_even")).tolist() == [2, 3, 4, -2, -3, -4, 2, -2]
    assert _np(shift_round(v, 0, "half_up")).tolist() == [5, 6, 7, -5, -6, -7, 3, -3]


def test_shift_round_left_shift_saturates():
    v = np.array([1, -1, 3, 2**40, -(2**40), 0])
    assert shift_round(v, -4, "half_up").tolist() == [16, -16, 48, 2**44, -(2**44), 0]
    assert shift_round(v, -30, "half_even", acc_bits=32).tolist() == [
        2**30,
        -(2**30),
        2**31 - 1,
        2**31 - 1,
        -(2**31),
        0,
    ]
    assert shift_round(v, -70, "half_up").tolist() == [2**63 - 1, -(2**63), 2**63 - 1, 2**63 - 1, -(2**63), 0]
    assert shift_round(np.array([-(2**63), 2**63 - 1]), 64, "half_up").tolist() == [0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_shift_round_per_channel(backend):
    acc = np.array([[10, 10, 10], [-10, -10, -10], [6, 6, 6]], dtype=np.int64)
    shifts = np.array([2, 0, -1])
    got = _np(shift_round(backend(acc), backend(shifts), "half_even", axis=1))
    assert got.tolist() == [[2, 10, 20], [-2, -10, -20], [2, 6, 12]]
    got_rows = _np(shift_round(backend(acc), backend(shifts), "half_up", axis=0))
    assert got_rows.tolist() == [[3, 3, 3], [-10, -10, -10], [12, 12, 12]]


def test_clamp_int():
    x = np.array([-40000, -129, -128, 127, 128, 40000])
    assert clamp_int(x, 8).tolist() == [-128, -128, -128, 127, 127, 127]
    assert clamp_int(x, 16).tolist() == [-32768, -129, -128, 127, 128, 32767]


@pytest.mark.parametrize("backend", [np.asarray, lambda a: torch.tensor(a, dtype=torch.float32)])
def test_quantize_ties_and_saturation(backend):
    x = backend([0.125, 0.375, -0.125, -0.375, 100.0, -100.0, 0.3])  # exponent -2: x*4
    assert _np(quantize(x, -2, 8, "half_even")).tolist() == [0, 2, 0, -2, 127, -128, 1]
    assert _np(quantize(x, -2, 8, "half_up")).tolist() == [1, 2, 0, -1, 127, -128, 1]
    assert _np(quantize(x, -8, 16, "half_up")).tolist() == [32, 96, -32, -96, 25600, -25600, 77]


@pytest.mark.parametrize("backend", BACKENDS)
def test_quantize_per_channel_and_dequantize(backend):
    w = np.array([[0.5, -0.26], [3.0, 1.0]], dtype=np.float32)
    e = np.array([-7, -5])  # one exponent per output channel (axis 0)
    q = quantize(backend(w), backend(e), 8, "half_even", axis=0)
    assert _np(q).tolist() == [[64, -33], [96, 32]]
    back = _np(dequantize(q, backend(e), axis=0))
    assert back.dtype == np.float32
    assert back.tolist() == [[0.5, -0.2578125], [3.0, 1.0]]
    assert _np(dequantize(backend(np.array([2**31 - 1])), 0, float64=True)).tolist() == [2**31 - 1]


def test_lut16_index():
    q = np.array([-32768, -32768 + 16, -32768 + 48, -32768 + 47, 32767])
    assert lut16_index(q, 2049, "half_even").tolist() == [0, 0, 2, 1, 2048]
    assert lut16_index(q, 2049, "half_up").tolist() == [0, 1, 2, 1, 2048]
    assert lut16_index(q, 65536, "half_up").tolist() == (q + 32768).tolist()  # step 1
    assert lut16_index(np.array([128, 384]), 257, "half_even").tolist() == [128, 130]
    with pytest.raises(ConfigError, match="power of two"):
        lut16_index(q, 100, "half_up")
