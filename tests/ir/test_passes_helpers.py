"""Shared helpers for the pass tests (no tests here): graph building and onnxruntime comparison."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from espq.ir.graph import Graph, Node, TensorInfo
from espq.ir.onnx_io import graph_to_onnx

F32 = np.dtype(np.float32)


def build(
    nodes: list[Node],
    inits: dict[str, np.ndarray],
    inputs: dict[str, tuple[int, ...]],
    outputs: dict[str, tuple[int, ...] | None],
    opset: int = 18,
) -> Graph:
    """A float32 graph from nodes, initializers and input/output shapes."""
    values = {k: TensorInfo(F32, s) for k, s in {**inputs, **outputs}.items()}
    g = Graph(nodes, {k: np.asarray(v) for k, v in inits.items()}, values, list(inputs), list(outputs))
    g.opset = opset
    return g


def node(op: str, ins: list[str], outs: list[str], name: str | None = None, **attrs) -> Node:
    return Node(name or f"{op}_{outs[0]}", op, ins, outs, attrs)


def rand(*shape: int, seed: int = 0, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).uniform(lo, hi, shape).astype(np.float32)


def insert_zeros_np(x: np.ndarray, stride: list[int], output_padding: list[int]) -> np.ndarray:
    """Reference ESP-DL InsertZeros on NC<spatial> data: stride−1 zeros between neighbours,
    output_padding zeros at the end of each spatial axis (esp_dl_facts.md §3.2)."""
    nd = x.ndim - 2
    out_sp = [x.shape[2 + i] + (stride[i] - 1) * (x.shape[2 + i] - 1) + output_padding[i] for i in range(nd)]
    out = np.zeros(x.shape[:2] + tuple(out_sp), x.dtype)
    idx = (slice(None), slice(None)) + tuple(
        slice(0, (x.shape[2 + i] - 1) * stride[i] + 1, stride[i]) for i in range(nd)
    )
    out[idx] = x
    return out


def runnable(graph: Graph) -> Graph:
    """A copy onnxruntime can run: Swish → Sigmoid·Mul; InsertZeros → an equivalent ConvTranspose
    with a 1×1 depthwise all-ones kernel (k=1, stride s: s−1 zeros between pixels, plus
    output_padding at the end)."""
    g = graph.copy()
    for n in list(g.nodes):
        if n.op_type == "Swish":
            sig = g.unique_name(f"{n.name}_sig")
            i = g.nodes.index(n)
            g.add_node(Node(g.unique_name(n.name + "_s"), "Sigmoid", [n.inputs[0]], [sig]), i)
            n.op_type, n.inputs, n.attrs = "Mul", [n.inputs[0], sig], {}
        elif n.op_type == "InsertZeros":
            shape = g.shape(n.inputs[0])
            if shape is None:  # channel count from the Conv it feeds: C_in = weight.shape[1] · group
                conv = g.consumers(n.outputs[0])[0]
                shape = (1, g.shape(conv.inputs[1])[1] * conv.attrs.get("group", 1))
            c = shape[1]
            nd = len(n.attrs["stride"])
            w = g.unique_name(n.name + "_ones")
            g.initializers[w] = np.ones((c, 1) + (1,) * nd, np.float32)
            n.op_type, n.inputs = "ConvTranspose", [n.inputs[0], w]
            n.attrs = {"strides": n.attrs["stride"], "output_padding": n.attrs["output_padding"], "group": c}
    g.invalidate()
    return g


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(graph: Graph, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Outputs of ``graph`` (made runnable) under onnxruntime, in ``graph.outputs`` order."""
    g = runnable(graph)
    return session(graph_to_onnx(g)).run(list(g.outputs), feeds)


def assert_close(a: list[np.ndarray], b: list[np.ndarray], rtol: float = 1e-5) -> None:
    """Elementwise |Δ| ≤ rtol·max|a| (+ a tiny absolute floor) for each output pair."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape, (x.shape, y.shape)
        if not np.issubdtype(x.dtype, np.floating):
            np.testing.assert_array_equal(x, y)
            continue
        scale = max(float(np.abs(x).max(initial=0.0)), 1e-6)
        err = float(np.abs(x.astype(np.float64) - y).max(initial=0.0))
        assert err <= rtol * scale, f"max |Δ| {err:.3g} > {rtol} · {scale:.3g}"


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    return {i: rand(*graph.shape(i), seed=seed) for i in graph.inputs}


def check_equivalent(before: Graph, after: Graph, seed: int = 0, rtol: float = 1e-5) -> None:
    """onnxruntime outputs of ``before`` and ``after`` agree on random inputs; output names kept."""
    assert after.outputs == before.outputs
    feeds = feeds_for(before, seed)
    assert_close(run(before, feeds), run(after, feeds), rtol)


def ops(graph: Graph) -> list[str]:
    return [n.op_type for n in graph.nodes]
