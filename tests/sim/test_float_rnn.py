"""RNN / GRU / LSTM float kernels vs onnxruntime (directions, layouts, biases, states, seq lens)."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import check_op, rand

T, B, I, H = 5, 3, 4, 6


def _inputs(
    gates: int, direction: str, layout: int, bias: bool, lens: bool, init: bool, lstm_c: bool = False
):
    d = 2 if direction == "bidirectional" else 1
    x = rand(B, T, I) if layout else rand(T, B, I)
    inputs = [
        x,
        ("c", rand(d, gates * H, I, low=-0.5, high=0.5)),
        ("c", rand(d, gates * H, H, low=-0.5, high=0.5)),
    ]
    inputs.append(("c", rand(d, 2 * gates * H, low=-0.5, high=0.5)) if bias else None)
    inputs.append(("c", np.array([5, 2, 4], np.int32)) if lens else None)
    state_shape = (B, d, H) if layout else (d, B, H)
    inputs.append(rand(*state_shape) if init else None)
    if lstm_c:
        inputs.append(rand(*state_shape) if init else None)
    return inputs


def _check(op: str, direction, layout, bias, lens, init, attrs, n_out, extra=()):
    """Compare with ORT; ORT lacks layout=1, so layout 1 is checked against ORT's layout-0 result."""
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    inputs = _inputs(gates, direction, layout, bias, lens, init, lstm_c=op == "LSTM") + list(extra)
    attrs = {"hidden_size": H, "direction": direction, "layout": layout, **attrs}
    if not layout:
        return check_op(op, inputs, attrs, n_out=n_out, opset=14)
    flat = [inputs[0].transpose(1, 0, 2)] + inputs[1:5]
    flat += [None if v is None else v.transpose(1, 0, 2) for v in inputs[5:7]] + inputs[7:]
    ref = check_op(op, flat, {**attrs, "layout": 0}, n_out=n_out, opset=14)
    ref = [ref[0].transpose(2, 0, 1, 3)] + [r.transpose(1, 0, 2) for r in ref[1:]]
    return check_op(op, inputs, attrs, n_out=n_out, opset=14, ref=ref)


CASES = [
    ("forward", 0, True, False, False),
    ("reverse", 0, True, False, True),
    ("bidirectional", 0, False, False, True),
    ("forward", 1, True, True, True),
    ("bidirectional", 1, True, True, False),
    ("reverse", 0, True, True, False),
]


@pytest.mark.parametrize("direction,layout,bias,lens,init", CASES)
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru(direction, layout, bias, lens, init, lbr):
    _check("GRU", direction, layout, bias, lens, init, {"linear_before_reset": lbr}, 2)


@pytest.mark.parametrize("direction,layout,bias,lens,init", CASES)
def test_lstm(direction, layout, bias, lens, init):
    _check("LSTM", direction, layout, bias, lens, init, {}, 3)


def test_lstm_peepholes_clip_input_forget():
    inputs = _inputs(4, "forward", 0, True, False, True, lstm_c=True)
    inputs.append(("c", rand(1, 3 * H)))
    attrs = {"hidden_size": H, "clip": 1.5, "input_forget": 1}
    check_op("LSTM", inputs, attrs, n_out=3, opset=14)


def test_gru_activations():
    attrs = {
        "hidden_size": H,
        "activations": ["HardSigmoid", "LeakyRelu"],
        "activation_alpha": [0.3, 0.1],
        "activation_beta": [0.4],
    }
    check_op("GRU", _inputs(3, "forward", 0, True, False, False), attrs, n_out=2, opset=14)


@pytest.mark.parametrize("direction,layout,bias,lens,init", CASES[:4])
def test_rnn(direction, layout, bias, lens, init):
    _check("RNN", direction, layout, bias, lens, init, {}, 2)


def test_gru_y_only():
    """Only Y requested (Y_h output name empty)."""
    got = check_op("GRU", _inputs(3, "forward", 0, True, False, False), {"hidden_size": H}, n_out=1, opset=14)
    assert got[0].shape == (T, 1, B, H)
