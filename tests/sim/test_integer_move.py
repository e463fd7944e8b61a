"""Data-movement and LUT kernels of the integer runner (esp_dl_facts.md §3.3, §4.10)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from espdl_builders import init, model, node, vi
from onnx import helper
from onnx.reference import ReferenceEvaluator

from espq.sim.integer import IntegerRunner
from espq.sim.integer.base import IntContext, QTensor
from espq.sim.integer.kernels_lut import lut_or_none

I8, I16, I64 = np.int8, np.int16, np.int64


def _run(op, x, out_shape, inits=(), extra_inputs=(), target="esp32p4", n_out=1, **attrs):
    outs = [f"y{i}" for i in range(n_out)]
    nd = node(op, ["x", *extra_inputs], outs, **attrs)
    shapes = out_shape if n_out > 1 else [out_shape]
    m = model(
        [nd],
        [vi("x", x.dtype, list(x.shape), -3)],
        [vi(o, x.dtype, list(s), -3) for o, s in zip(outs, shapes)],
        list(inits),
        target=target,
    )
    res = IntegerRunner(m).run({"x": x}, raw=True)
    return [res[o] for o in outs] if n_out > 1 else res["y0"]


def _onnx_ref(op, x, **attrs):
    g = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    return ReferenceEvaluator(helper.make_model(g)).run(None, {"x": x.astype(np.float32)})[0]


X = np.arange(-60, 60, dtype=I8).reshape(2, 3, 4, 5)


def test_slice_with_negative_steps_and_clamping():
    inits = [
        init("st", np.array([-1, 0], I64), I64),
        init("en", np.array([-(2**62), 99], I64), I64),
        init("ax", np.array([3, 1], I64), I64),
        init("sp", np.array([-2, 2], I64), I64),
    ]
    y = _run("Slice", X, [2, 2, 4, 3], inits, ["st", "en", "ax", "sp"])
    np.testing.assert_array_equal(y, X[:, 0::2, :, ::-2])


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_modes(mode):
    x = X[0, 0]  # [4, 5]
    inits = [init("p", np.array([1, 2, 2, 1], I64), I64), init("v", np.array([-7], I8), I8, -3)]
    y = _run("Pad", x, [7, 8], inits, ["p", "v"], mode=mode)
    ref = np.pad(x, ((1, 2), (2, 1)), mode=mode, **({"constant_values": -7} if mode == "constant" else {}))
    np.testing.assert_array_equal(y, ref)
    crop = _run("Pad", x, [3, 5], [init("p", np.array([-1, 0, 0, 0], I64), I64)], ["p"])
    np.testing.assert_array_equal(crop, x[1:])


def test_reshape_flatten_squeeze_unsqueeze_transpose():
    y = _run("Reshape", X, [2, 60], [init("s", np.array([0, -1], I64), I64)], ["s"])
    np.testing.assert_array_equal(y, X.reshape(2, 60))
    np.testing.assert_array_equal(_run("Flatten", X, [24, 5], axis=-1), X.reshape(24, 5))
    np.testing.assert_array_equal(_run("Flatten", X, [1, 120], axis=0), X.reshape(1, 120))
    x1 = X[:1]
    np.testing.assert_array_equal(
        _run("Squeeze", x1, [3, 4, 5], [init("a", np.array([0], I64), I64)], ["a"]), X[0]
    )
    u = _run("Unsqueeze", X, [2, 3, 1, 4, 5, 1], [init("a", np.array([2, -1], I64), I64)], ["a"])
    assert u.shape == (2, 3, 1, 4, 5, 1)
    np.testing.assert_array_equal(
        _run("Transpose", X, [5, 2, 4, 3], perm=[3, 0, 2, 1]), X.transpose(3, 0, 2, 1)
    )


def test_split_gather_concat_identity():
    parts = _run(
        "Split",
        X,
        [[2, 3, 1, 5], [2, 3, 3, 5]],
        [init("s", np.array([1, 3], I64), I64)],
        ["s"],
        n_out=2,
        axis=2,
    )
    np.testing.assert_array_equal(parts[0], X[:, :, :1])
    np.testing.assert_array_equal(parts[1], X[:, :, 1:])
    idx = init("i", np.array([[0, -1], [2, 1]], I64), I64)
    np.testing.assert_array_equal(
        _run("Gather", X, [2, 2, 2, 4, 5], [idx], ["i"], axis=1), X[:, [[0, 2], [2, 1]]]
    )
    np.testing.assert_array_equal(_run("Identity", X, X.shape), X)
    nd = node("Concat", ["a", "b"], ["y"], axis=-1)
    m = model([nd], [vi("a", I8, [2, 2], -3), vi("b", I8, [2, 1], -3)], [vi("y", I8, [2, 3], -3)])
    y = IntegerRunner(m).run({"a": np.ones((2, 2), I8), "b": np.full((2, 1), 5, I8)}, raw=True)["y"]
    np.testing.assert_array_equal(y, [[1, 1, 5], [1, 1, 5]])


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space_matches_onnx_on_nhwc(mode):
    x_nchw = np.arange(72, dtype=I8).reshape(1, 8, 3, 3)
    y = _run("DepthToSpace", x_nchw.transpose(0, 2, 3, 1).copy(), [1, 6, 6, 2], blocksize=2, mode=mode)
    ref = _onnx_ref("DepthToSpace", x_nchw, blocksize=2, mode=mode)
    np.testing.assert_array_equal(y.transpose(0, 3, 1, 2), ref)


def test_space_to_depth_uses_channel_major_order():
    """Op-test outputs (all targets) put channel c's b×b block first: out channel c·b² + bh·b + bw,
    i.e. the inverse of DepthToSpace CRD, not ONNX SpaceToDepth's (bh·b + bw)·C + c."""
    x_nchw = np.arange(72, dtype=I8).reshape(1, 2, 6, 6)
    y = _run("SpaceToDepth", x_nchw.transpose(0, 2, 3, 1).copy(), [1, 3, 3, 8], blocksize=2)
    back = _onnx_ref("DepthToSpace", y.transpose(0, 3, 1, 2), blocksize=2, mode="CRD")
    np.testing.assert_array_equal(back, x_nchw)


def test_reverse_sequence_and_insert_zeros():
    x = np.arange(12, dtype=I8).reshape(3, 4)  # time 3, batch 4
    lens = init("l", np.array([1, 2, 3, 0], I64), I64)
    y = _run("ReverseSequence", x, [3, 4], [lens], ["l"], batch_axis=1, time_axis=0)
    np.testing.assert_array_equal(y[:, 2], x[::-1, 2])
    np.testing.assert_array_equal(y[:, 1], [x[1, 1], x[0, 1], x[2, 1]])
    np.testing.assert_array_equal(y[:, [0, 3]], x[:, [0, 3]])
    z = _run("InsertZeros", np.ones((1, 2, 3, 1), I8), [1, 4, 8, 1], stride=[2, 3], output_padding=[1, 1])
    expect = np.zeros((4, 8), I8)
    expect[0:3:2, 0:7:3] = 1
    np.testing.assert_array_equal(z[0, :, :, 0], expect)


def test_streaming_cache_keeps_frames_until_reset():
    nd = node("StreamingCache", ["x"], ["y"], frame_axis=1, window_size=3)
    m = model([nd], [vi("x", I8, [1, 2, 1], 0)], [vi("y", I8, [1, 4, 1], 0)])
    r = IntegerRunner(m)
    first = r.run({"x": np.array([[[1], [2]]], I8)}, raw=True)["y"]
    second = r.run({"x": np.array([[[3], [4]]], I8)}, raw=True)["y"]
    np.testing.assert_array_equal(first.reshape(-1), [0, 0, 1, 2])
    np.testing.assert_array_equal(second.reshape(-1), [1, 2, 3, 4])
    r.reset()
    np.testing.assert_array_equal(
        r.run({"x": np.array([[[5], [6]]], I8)}, raw=True)["y"].reshape(-1), [0, 0, 5, 6]
    )


def test_int8_lut_path_and_lut_or_none():
    table = init("tab", (np.arange(256) - 128) // 2, I8, -4)  # entry k <-> input k - 128
    x = np.array([-128, -1, 0, 7, 127], I8)
    y = _run("LUT", x, [5], [table], lut="tab")
    np.testing.assert_array_equal(y, [-64, -1, 0, 3, 63])
    nd = node("Sigmoid", ["x"], ["y"], lut="tab")
    graph_model = model([nd], [vi("x", I8, [5])], [vi("y", I8, [5], -4)], [table])
    ctx = IntContext(target=IntegerRunner(graph_model).target, node=nd, model=graph_model)
    res = lut_or_none(ctx, [QTensor(x, -3)])
    assert res is not None and res[0].exponent == -4
    np.testing.assert_array_equal(res[0].data, [-64, -1, 0, 3, 63])
    assert lut_or_none(ctx, [QTensor(x.astype(I16), -3)]) is None  # S16 activations compute in float
    nd.attributes.pop("lut")
    assert lut_or_none(ctx, [QTensor(x, -3)]) is None


@pytest.mark.parametrize(
    ("target", "expect"), [("esp32p4", [0, 0, 2, 2, 256]), ("esp32s3", [0, 1, 2, 3, 256])]
)
def test_int16_lut_nearest_entry_with_target_tie(target, expect):
    """257 entries (step 256): input −32768 + 128 is halfway between entries 0 and 1 (§3.3)."""
    table = init("tab", np.arange(257, dtype=I16), I16, -8)
    x = np.array([-32768, -32640, -32384, -32128, 32767], I16)  # idx 0, 0.5, 1.5, 2.5, 255.996
    y = _run("Gelu", x, [5], [table], target=target, lut="tab", quant_type="S16")
    np.testing.assert_array_equal(y, expect)
