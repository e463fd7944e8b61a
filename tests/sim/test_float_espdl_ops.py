"""ESP-DL-only ops (no onnxruntime kernel): InsertZeros, LUT, StreamingCache, RequantizeLinear,
Swish and the fused `activation` attribute, checked against numpy references written here."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import assert_close, check_op, rand

from espq.errors import UnsupportedOpError
from espq.ir import Graph, Node, TensorInfo
from espq.sim.float import FloatSession, run_float


def one_node(op: str, x: np.ndarray, attrs: dict | None = None, inits: dict | None = None, extra_inputs=()):
    inits = dict(inits or {})
    node = Node("n0", op, ["x", *extra_inputs], ["y"], dict(attrs or {}))
    values = {"x": TensorInfo(x.dtype, tuple(x.shape))}
    return Graph([node], inits, values, ["x"], ["y"])


def np_insert_zeros(x: np.ndarray, stride: list[int], opad: list[int]) -> np.ndarray:
    sp = x.shape[2:]
    out = np.zeros((*x.shape[:2], *[(d - 1) * s + 1 + p for d, s, p in zip(sp, stride, opad)]), x.dtype)
    if len(sp) == 1:
        out[:, :, :: stride[0]][:, :, : sp[0]] = x
    else:
        out[:, :, :: stride[0], :: stride[1]][:, :, : sp[0], : sp[1]] = x
    return out


@pytest.mark.parametrize(
    "shape,stride,opad",
    [
        ((2, 3, 4, 5), [2, 2], [0, 0]),
        ((1, 2, 3, 3), [3, 2], [1, 0]),
        ((2, 4, 6), [2], [1]),
        ((1, 2, 3, 4), [2], [1]),
    ],
)
def test_insert_zeros(shape, stride, opad):
    x = rand(*shape)
    g = one_node("InsertZeros", x, {"stride": stride, "output_padding": opad})
    nsp = len(shape) - 2
    full_s = stride * nsp if len(stride) == 1 else stride
    full_p = opad * nsp if len(opad) == 1 else opad
    assert_close(run_float(g, x)["y"], np_insert_zeros(x, full_s, full_p))


@pytest.mark.parametrize(
    "xs,ws,s,p,op",
    [((2, 3, 5, 4), (3, 4, 3, 3), [2, 2], [1, 1, 1, 1], [1, 0]), ((1, 2, 6), (2, 3, 4), [3], [1, 2], [2])],
)
def test_insert_zeros_plus_conv_equals_conv_transpose(xs, ws, s, p, op):
    """ESP-PPQ's ConvTranspose lowering (esp_ppq_facts §3.4) reproduces ORT's ConvTranspose."""
    x, w = rand(*xs), rand(*ws)
    ref = check_op("ConvTranspose", [x, ("c", w)], {"strides": s, "pads": p, "output_padding": op})[0]
    nsp = len(s)
    k = ws[2:]
    pads = [k[i] - p[i] - 1 for i in range(nsp)] + [k[i] - p[i + nsp] - 1 for i in range(nsp)]
    w_conv = np.flip(w, axis=tuple(range(2, 2 + nsp))).swapaxes(0, 1).copy()
    nodes = [
        Node("iz", "InsertZeros", ["x"], ["z"], {"stride": s, "output_padding": op}),
        Node("conv", "Conv", ["z", "w"], ["y"], {"pads": pads, "strides": [1] * nsp}),
    ]
    g = Graph(nodes, {"w": w_conv}, {"x": TensorInfo(np.dtype(np.float32), xs)}, ["x"], ["y"])
    assert_close(run_float(g, x)["y"], ref)


@pytest.mark.parametrize(
    "original,attrs,ref_fn",
    [
        ("HardSwish", {}, lambda x: x * np.clip(x / 6 + 0.5, 0, 1)),
        ("Relu", {}, lambda x: np.maximum(x, 0)),
        ("LeakyRelu", {"alpha": 0.1}, lambda x: np.where(x > 0, x, 0.1 * x)),
        ("Sigmoid", {}, lambda x: 1 / (1 + np.exp(-x))),
    ],
)
def test_lut_evaluates_original_op(original, attrs, ref_fn):
    x = rand(2, 3, 4)
    table = np.arange(256, dtype=np.int8)
    g = one_node("LUT", x, {"lut": "tbl", "original_op_type": original, **attrs}, {"tbl": table}, ["tbl"])
    assert_close(run_float(g, x)["y"], ref_fn(x))


def test_lut_without_original_op_is_rejected():
    x = rand(3)
    g = one_node("LUT", x, {"lut": "tbl"}, {"tbl": np.zeros(256, np.int8)}, ["tbl"])
    with pytest.raises(UnsupportedOpError, match="original_op_type"):
        run_float(g, x)


def test_gelu_with_lut_attribute_is_plain_gelu():
    x = rand(5)
    g = one_node("Gelu", x, {"lut": "Gelu_lut_0"})
    from math import erf

    ref = np.array([0.5 * v * (1 + erf(v / np.sqrt(2))) for v in x.astype(np.float64)])
    assert_close(run_float(g, x)["y"], ref.astype(np.float32))


def test_requantize_linear_is_identity():
    x = rand(2, 3)
    g = one_node("RequantizeLinear", x, {}, {"s": np.array(0.5, np.float32)}, ["s"])
    np.testing.assert_array_equal(run_float(g, x)["y"], x)


@pytest.mark.parametrize("alpha", [None, 1.702])
def test_swish(alpha):
    x = rand(2, 4, 3)
    g = one_node("Swish", x, {} if alpha is None else {"alpha": alpha})
    a = 1.0 if alpha is None else alpha
    assert_close(run_float(g, x)["y"], x / (1 + np.exp(-a * x)))


@pytest.mark.parametrize("op", ["Conv", "Gemm", "MatMul"])
def test_fused_relu_activation_attribute(op):
    """ESP-DL Conv/Gemm/MatMul `activation` attribute (esp_dl_facts §2.2)."""
    if op == "Conv":
        x, w, ref = rand(1, 2, 4, 4), rand(3, 2, 1, 1), None
        ref = np.einsum("nchw,oc->nohw", x, w[:, :, 0, 0])
    else:
        x, w = rand(3, 4), rand(4, 5)
        ref = x @ w
    g = one_node(op, x, {"activation": "Relu"}, {"w": w}, ["w"])
    assert_close(run_float(g, x)["y"], np.maximum(ref, 0))
    g = one_node(op, x, {"activation": "Linear"}, {"w": w}, ["w"])
    assert_close(run_float(g, x)["y"], ref)


def np_streaming(frames: list[np.ndarray], axis: int, window: int) -> list[np.ndarray]:
    shape = list(frames[0].shape)
    shape[axis] = window - 1
    cache = np.zeros(shape, frames[0].dtype)
    outs = []
    for f in frames:
        y = np.concatenate([cache, f], axis=axis)
        cache = np.take(y, range(y.shape[axis] - (window - 1), y.shape[axis]), axis=axis)
        outs.append(y)
    return outs


@pytest.mark.parametrize("shape,axis,window", [((1, 2, 8), 1, 3), ((2, 3, 4), 2, 5), ((1, 4, 2, 3), 2, 2)])
def test_streaming_cache_session(shape, axis, window):
    frames = [rand(*shape) for _ in range(4)]
    g = one_node("StreamingCache", frames[0], {"frame_axis": axis, "window_size": window})
    sess = FloatSession(g)
    ref = np_streaming(frames, axis, window)
    for f, r in zip(frames, ref):
        assert_close(sess.run(f)["y"], r)
    sess.reset()
    assert_close(sess.run(frames[0])["y"], ref[0])
    # run_float is stateless: every call sees an empty cache
    for f in frames[:2]:
        assert_close(run_float(g, f)["y"], np_streaming([f], axis, window)[0])


def test_streaming_cache_window_one_is_identity():
    x = rand(1, 3, 4)
    g = one_node("StreamingCache", x, {"frame_axis": 1, "window_size": 1})
    np.testing.assert_array_equal(FloatSession(g).run(x)["y"], x)


def test_streaming_conv_equals_offline_conv():
    """Chunks through StreamingCache(window=k) + valid Conv1d == one causal conv over the sequence."""
    c_in, c_out, k, chunk, n_chunks = 3, 4, 3, 2, 5
    w = rand(c_out, c_in, k)
    nodes = [
        Node("cache", "StreamingCache", ["x"], ["xc"], {"frame_axis": 2, "window_size": k}),
        Node("conv", "Conv", ["xc", "w"], ["y"], {"kernel_shape": [k]}),
    ]
    g = Graph(nodes, {"w": w}, {"x": TensorInfo(np.dtype(np.float32), (1, c_in, chunk))}, ["x"], ["y"])
    seq = rand(1, c_in, chunk * n_chunks)
    sess = FloatSession(g)
    streamed = np.concatenate(
        [sess.run(seq[:, :, i * chunk : (i + 1) * chunk])["y"] for i in range(n_chunks)], axis=2
    )
    offline = check_op("Conv", [seq, ("c", w)], {"pads": [k - 1, 0]})[0]  # causal: pad the past only
    assert_close(streamed, offline)
