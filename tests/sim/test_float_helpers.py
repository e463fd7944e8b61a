"""Helpers for the float-executor op tests: build a one-node ONNX model, run it with espq and ORT.

The other ``test_float_*`` files import :func:`check_op` from here (pytest puts this folder on
``sys.path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from espq.ir.onnx_io import graph_from_onnx
from espq.sim.float import run_float

RNG = np.random.default_rng(0)


def rand(*shape: int, low: float = -3.0, high: float = 3.0, dtype=np.float32) -> np.ndarray:
    """Uniform random array (deterministic across the session)."""
    return RNG.uniform(low, high, size=shape).astype(dtype)


def one_node_model(
    op: str,
    feeds: dict[str, np.ndarray],
    consts: dict[str, np.ndarray] | None,
    input_order: Sequence[str],
    out_dtypes: Sequence[np.dtype],
    attrs: dict[str, Any] | None = None,
    opset: int = 18,
    domain: str = "",
) -> onnx.ModelProto:
    """A model with one ``op`` node; ``input_order`` names feeds, consts or '' (absent input)."""
    consts = consts or {}
    outs = [f"y{i}" for i in range(len(out_dtypes))]
    node = helper.make_node(op, list(input_order), outs, domain=domain or None, **(attrs or {}))
    g_in = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
        for n, a in feeds.items()
    ]
    g_out = [
        helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(d)), None)
        for o, d in zip(outs, out_dtypes)
    ]
    inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
    graph = helper.make_graph([node], "t", g_in, g_out, initializer=inits)
    imports = [helper.make_opsetid("", opset)]
    if domain:
        imports.append(helper.make_opsetid(domain, 1))
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8 if opset < 21 else 10
    return model


def assert_close(got: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """max|Δ| <= 1e-4 * max|ref| + 1e-6, same shape and dtype kind; NaNs must match."""
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != {ref.shape}"
    if ref.dtype == bool or ref.dtype.kind in "iu":
        np.testing.assert_array_equal(got.astype(ref.dtype), ref, err_msg=what)
        return
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    nan = np.isnan(ref64)
    assert np.array_equal(nan, np.isnan(got64)), f"{what}: NaN positions differ"
    fin = ~nan
    if not fin.any():
        return
    inf = np.isinf(ref64) & fin
    assert np.array_equal(ref64[inf], got64[inf]), f"{what}: inf positions differ"
    fin &= ~inf
    if not fin.any():
        return
    err = np.abs(got64[fin] - ref64[fin]).max()
    tol = 1e-4 * np.abs(ref64[fin]).max() + 1e-6
    assert err <= tol, f"{what}: max|diff| {err} > tol {tol}"


def run_espq(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    g = graph_from_onnx(model)
    res = run_float(g, feeds)
    return [res[o] for o in g.outputs]


def check_op(
    op: str,
    inputs: Sequence[np.ndarray | None | tuple[str, np.ndarray]],
    attrs: dict[str, Any] | None = None,
    n_out: int = 1,
    opset: int = 18,
    ref: Sequence[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Run a one-node ``op`` with espq and compare with onnxruntime (or with ``ref`` when given).

    ``inputs``: an array is a graph input, ``("const", array)`` an initializer, ``None`` an absent
    optional input. Returns espq's outputs.
    """
    feeds: dict[str, np.ndarray] = {}
    consts: dict[str, np.ndarray] = {}
    order: list[str] = []
    for i, v in enumerate(inputs):
        if v is None:
            order.append("")
        elif isinstance(v, tuple):
            consts[f"c{i}"] = v[1]
            order.append(f"c{i}")
        else:
            feeds[f"x{i}"] = v
            order.append(f"x{i}")
    # first pass with float32 placeholders to learn espq's output dtypes
    probe = one_node_model(op, feeds, consts, order, [np.float32] * n_out, attrs, opset)
    got = run_espq(probe, feeds)
    model = one_node_model(op, feeds, consts, order, [g.dtype for g in got], attrs, opset)
    if ref is None:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ref = sess.run(None, feeds)
    for k, (a, b) in enumerate(zip(got, ref)):
        assert a.dtype == np.asarray(b).dtype, f"{op} output {k}: dtype {a.dtype} != {np.asarray(b).dtype}"
        assert_close(a, b, f"{op} output {k}")
    return got


def test_assert_close_catches_errors():
    ref = np.array([1.0, 2.0, 100.0], dtype=np.float32)
    assert_close(ref + 1e-3, ref)
    import pytest

    with pytest.raises(AssertionError):
        assert_close(ref + np.array([0, 0, 0.1], dtype=np.float32), ref)
    with pytest.raises(AssertionError):
        assert_close(ref[:2], ref)
