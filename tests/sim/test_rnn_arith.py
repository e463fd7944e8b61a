"""GRU/LSTM chip facts the fake-quant == runner tests cannot see (both share espq.sim.integer.rnn_arith):
the dot-product path per target (dl_base_dotprod.cpp), GRU's raw ``initial_h`` copy and bidirectional
GRU (dl_module_gru.hpp since 2025-09)."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_context import param, q, run_op

from espq.sim.integer.rnn_arith import RnnArith, dotprod
from espq.targets import get_target

# a·b + c = 20000·2048 + 1023 = 40 961 023: exactly 20000.4995 · 2^11, but float32 (spacing 4 above
# 2^25) rounds the sum to 40 961 024, a tie that half-up rounds to 20001
ROW = [20000, 1, 0, 0, 0, 0, 0, 0]
VEC = [2048, 1023, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    ("target", "cols", "want"),
    [
        ("esp32s3", 8, 20000),  # tie728 i16k16o16: exact ACCX sum + 1 << (shift-1), arithmetic shift
        ("esp32s3", 7, 20001),  # row not a multiple of 8: dotprod_c, round(float32(sum) · 2^-11)
        ("c", 8, 20001),  # no PIE: always the C path
        ("esp32p4", 8, 20000),  # esp32p4 i16k16o16: exact sum, half-even shift
    ],
)
def test_dotprod_path_follows_the_target(target, cols, want):
    a = RnnArith.for_target(get_target(target), -9, np.int16)
    m = np.array([ROW[:cols]], np.int64)
    v = np.array(VEC[:cols], np.int64)
    assert int(dotprod(a, m, v, 11)[0]) == want


def test_dotprod_saturates_to_int16():
    a = RnnArith.for_target(get_target("esp32p4"), -9, np.int8)
    m = np.full((2, 16), 127, np.int64)
    m[1] *= -1
    assert dotprod(a, m, np.full(16, 127, np.int64), 0).tolist() == [32767, -32768]


def _gru(h0_exp: int, direction: str = "forward", target: str = "esp32s3"):
    hidden, size, dirs = 4, 8, 2 if direction == "bidirectional" else 1
    zeros = np.zeros((dirs, 3 * hidden, size), np.int8)
    params = {
        1: param("W", zeros, -7),
        2: param("R", np.zeros((dirs, 3 * hidden, hidden), np.int8), -7),
        5: param("H0", np.array([[[10, -7, 33, 0]]] * dirs, np.int8).reshape(dirs, 1, hidden), h0_exp),
    }
    return run_op(
        "GRU",
        [q(np.ones((3, 1, size)), -6), None, None],
        target=target,
        attrs={"hidden_size": hidden, "linear_before_reset": 1, "gate_exponent": -9, "direction": direction},
        params=params,
        out_exponents=[-7, -7],
        out_dtypes=[np.int8, np.int8],
    )


@pytest.mark.parametrize("h0_exp", [-7, -3])
def test_gru_copies_initial_h_raw(h0_exp):
    # W = R = 0, no bias: z = r = sigmoid(0) = 0.5, n = tanh(0) = 0, so h_t = round(0.5 · h_{t-1}) on the
    # codes; the initial codes are used as stored, whatever their exponent (memcpy)
    y, y_h = _gru(h0_exp)
    assert y.data.reshape(3, 4).tolist() == [[5, -3, 17, 0], [3, -1, 9, 0], [2, 0, 5, 0]]  # half up
    assert y_h.data.reshape(-1).tolist() == [2, 0, 5, 0]


def test_gru_bidirectional_runs_both_directions():
    y, y_h = _gru(-7, "bidirectional")
    assert y.data.shape == (3, 2, 1, 4) and y_h.data.shape == (2, 1, 4)
    fwd = [[5, -3, 17, 0], [3, -1, 9, 0], [2, 0, 5, 0]]
    assert y.data[:, 0].reshape(3, 4).tolist() == fwd
    assert y.data[:, 1].reshape(3, 4).tolist() == fwd[::-1]  # the backward direction starts at t = 2
