"""The fast integer-array printer of `.info` files equals numpy's repr exactly."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from espq.espdl.info import array_repr


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8])
def test_matches_numpy_repr(dtype):
    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    info = np.iinfo(dtype)
    for n in list(range(1, 40)) + [97, 255, 256, 1000]:
        for lo, hi in ((info.min, info.max), (0, 5), (-3, 3), (max(info.min, -100), 100)):
            a = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64).astype(dtype)
            with np.printoptions(threshold=sys.maxsize):
                assert array_repr(a) == repr(a)


def test_float_and_empty_arrays_fall_back_to_numpy():
    a = np.linspace(-1, 1, 7, dtype=np.float32)
    assert array_repr(a) == repr(a)
    e = np.zeros(0, np.int8)
    assert array_repr(e) == repr(e)
