"""minmax_to_clip and pool_ceil_to_pads (issue 13 finding 8): before/after with onnxruntime equality."""

from __future__ import annotations

import numpy as np
import pytest

from espq.ir.passes import infer_shapes, minmax_to_clip, pool_ceil_to_pads

try:
    from .test_passes_helpers import build, check_equivalent, node, ops, rand, run
except ImportError:
    from test_passes_helpers import build, check_equivalent, node, ops, rand, run


def _clip_bounds(g, n) -> tuple[float | None, float | None]:
    vals = []
    for i in (1, 2):
        t = n.inputs[i] if len(n.inputs) > i else ""
        vals.append(float(g.initializers[t].reshape(-1)[0]) if t else None)
    return vals[0], vals[1]


@pytest.mark.parametrize(
    "op,const,expect",
    [
        ("Max", np.full((1, 1, 1, 1), -0.4, np.float32), (-0.4, None)),  # openWakeWord's form
        ("Min", np.array(0.25, np.float32), (None, 0.25)),
        ("Max", np.full((3, 1, 1), 0.1, np.float32), (0.1, None)),
    ],
)
def test_minmax_constant_becomes_clip(op, const, expect):
    nodes = [node("LeakyRelu", ["x"], ["a"], alpha=0.2), node(op, ["a", "c"], ["y"], name="mm")]
    g = build(nodes, {"c": const}, {"x": (1, 3, 4, 5)}, {"y": (1, 3, 4, 5)})
    infer_shapes(g)
    before = g.copy()
    assert minmax_to_clip(g) == 1
    assert ops(g) == ["LeakyRelu", "Clip"]
    clip = g.nodes[1]
    assert clip.name == "mm" and clip.outputs == ["y"]
    lo, hi = _clip_bounds(g, clip)
    assert (lo is None) == (expect[0] is None) and (hi is None) == (expect[1] is None)
    assert lo == pytest.approx(expect[0]) if lo is not None else hi == pytest.approx(expect[1])
    check_equivalent(before, g, rtol=0)
    y = run(g, {"x": rand(1, 3, 4, 5, lo=-3, hi=3)})[0]
    assert (y.min() >= -0.4 - 1e-7) if op == "Max" else (y.max() <= 0.25 + 1e-7)


def test_minmax_chain_merges_into_one_clip():
    """Max(Min(x, 0.5), -0.3) -> Clip(x, -0.3, 0.5); Min(Max(...)) too; commuted operands."""
    nodes = [
        node("Min", ["x", "hi"], ["a"]),
        node("Max", ["lo", "a"], ["b"]),
        node("Max", ["b", "lo2"], ["c"]),  # tighter lower bound: merged interval [-0.1, 0.5]
    ]
    inits = {
        "hi": np.array(0.5, np.float32),
        "lo": np.array([-0.3], np.float32),
        "lo2": np.array(-0.1, np.float32),
    }
    g = build(nodes, inits, {"x": (2, 7)}, {"c": (2, 7)})
    infer_shapes(g)
    before = g.copy()
    assert minmax_to_clip(g) == 5  # 3 Max/Min -> Clip, 2 merges
    assert ops(g) == ["Clip"]
    assert _clip_bounds(g, g.nodes[0]) == (pytest.approx(-0.1), pytest.approx(0.5))
    assert g.nodes[0].inputs[0] == "x" and g.nodes[0].outputs == ["c"]
    check_equivalent(before, g, rtol=0)


def test_minmax_left_alone():
    inits = {
        "ramp": np.linspace(-1, 1, 5, dtype=np.float32),  # not one value: the capability error stays
        "big": np.zeros((2, 3, 5), np.float32),  # would broadcast x [3, 5] to [2, 3, 5]
        "lo": np.array(0.6, np.float32),
        "hi": np.array(0.2, np.float32),
    }
    nodes = [
        node("Max", ["x", "ramp"], ["a"]),
        node("Min", ["x", "big"], ["b"]),
        node("Max", ["x", "x2"], ["c"]),  # two tensors
    ]
    g = build(nodes, inits, {"x": (3, 5), "x2": (3, 5)}, {"a": (3, 5), "b": (2, 3, 5), "c": (3, 5)})
    infer_shapes(g)
    assert minmax_to_clip(g) == 0
    assert ops(g) == ["Max", "Min", "Max"]
    # disjoint intervals: Max(Min(x, 0.2), 0.6) is constant 0.6, not ONNX Clip(x, 0.6, 0.2) (= 0.2)
    g = build(
        [node("Min", ["x", "hi"], ["a"]), node("Max", ["a", "lo"], ["y"])],
        inits,
        {"x": (3, 5)},
        {"y": (3, 5)},
    )
    infer_shapes(g)
    before = g.copy()
    assert minmax_to_clip(g) == 2 and ops(g) == ["Clip", "Clip"]
    check_equivalent(before, g, rtol=0)
    np.testing.assert_array_equal(run(g, {"x": rand(3, 5)})[0], np.full((3, 5), 0.6, np.float32))


@pytest.mark.parametrize(
    "attrs,size,extra",
    [
        ({"kernel_shape": [3, 3], "strides": [2, 2]}, (10, 9), [1, 0]),  # MTCNN P-Net: 3x3/2 ceil
        ({"kernel_shape": [2, 2], "strides": [2, 2]}, (7, 5), [1, 1]),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 1]}, (8, 8), [1, 0]),
        ({"kernel_shape": [3], "strides": [2]}, (12,), [1]),
    ],
)
def test_maxpool_ceil_becomes_end_pads(attrs, size, extra):
    shape = (1, 4, *size)
    g = build([node("MaxPool", ["x"], ["y"], ceil_mode=1, **attrs)], {}, {"x": shape}, {"y": None})
    infer_shapes(g)
    before = g.copy()
    assert pool_ceil_to_pads(g) == 1
    mp = g.nodes[0]
    assert "ceil_mode" not in mp.attrs
    n = len(size)
    pads = attrs.get("pads", [0] * (2 * n))
    assert mp.attrs["pads"] == pads[:n] + [pads[n + i] + extra[i] for i in range(n)]
    # all-negative input: a zero pad value would win the max; ONNX pads (and ESP-DL's) are excluded
    feeds = {"x": rand(*shape, lo=-5.0, hi=-1.0)}
    a, b = run(before, feeds)[0], run(g, feeds)[0]
    assert a.shape == b.shape and a.shape != run(_floor(before), feeds)[0].shape
    np.testing.assert_array_equal(a, b)
    assert b.max() < 0
    check_equivalent(before, g, rtol=0)


def _floor(g):
    out = g.copy()
    out.nodes[0].attrs["ceil_mode"] = 0
    return out


def test_avgpool_ceil_only_where_it_changes_nothing():
    same = {"kernel_shape": [2, 2], "strides": [2, 2]}
    g = build([node("AveragePool", ["x"], ["y"], ceil_mode=1, **same)], {}, {"x": (1, 2, 6, 4)}, {"y": None})
    infer_shapes(g)
    before = g.copy()
    assert pool_ceil_to_pads(g) == 1 and "ceil_mode" not in g.nodes[0].attrs
    assert "pads" not in g.nodes[0].attrs
    check_equivalent(before, g, rtol=0)
    # 7x5 with 2x2/2: ceil adds a column ESP-DL would divide by 4, ONNX by 2 -> left for the check
    g = build([node("AveragePool", ["x"], ["y"], ceil_mode=1, **same)], {}, {"x": (1, 2, 7, 5)}, {"y": None})
    infer_shapes(g)
    assert pool_ceil_to_pads(g) == 0 and g.nodes[0].attrs["ceil_mode"] == 1
