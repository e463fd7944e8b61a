"""Fuzz the ONNX front door: mutate small models' protos and check that only EspqError escapes.

Usage: python bench/fuzz_onnx.py N [--seed S] [--quantize] [--out DIR]

Each of N cases takes a seed model (Conv/Relu/Add/MaxPool, Gemm, Resize/Concat, Reshape chains, built
here) and applies 1-3 mutations of its proto: input/output dims (0, negative, huge, rank changes),
attributes (random ints and floats, removed, wrong type), initializers (dims that disagree with the data,
NaN/Inf, huge dims, another dtype, removed) and opsets (0..30, an unknown domain). The case then runs
``espq.load`` and ``espq.check_model`` (with ``--quantize`` also one calibration batch and the export to
bytes). Outcomes: ``ok``, ``rejected`` (an EspqError: one clean message) or ``traceback`` (any other
exception: a bug; saved to ``--out`` as ``<sha1>.onnx`` + ``.txt``). A case slower than ``--slow``
seconds counts as ``slow``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import espq
from espq import espdl
from espq.errors import EspqError
from espq.export import build_espdl

ROOT = Path(__file__).resolve().parents[1]
HUGE = 1 << 40


def _model(nodes, inputs, outputs, inits, opset=18) -> onnx.ModelProto:
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs]
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    m = helper.make_model(
        helper.make_graph(nodes, "fuzz", vis, outs, tensors), opset_imports=[helper.make_opsetid("", opset)]
    )
    m.ir_version = 8
    return m


def seed_models() -> list[onnx.ModelProto]:
    """Four small models covering conv-like, matrix, resize/concat and shape-op paths."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    conv = _model(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Add", ["r", "c"], ["a"], name="add"),
            helper.make_node("MaxPool", ["a"], ["y"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        ],
        [("x", [1, 3, 8, 8])],
        [("y", [1, 4, 4, 4])],
        {"w": f(4, 3, 3, 3), "b": f(4)},
    )
    gemm = _model(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm", transB=1),
            helper.make_node("Sigmoid", ["g"], ["y"], name="sig"),
        ],
        [("x", [1, 16])],
        [("y", [1, 8])],
        {"w": f(8, 16), "b": f(8)},
    )
    resize = _model(
        [
            helper.make_node("Resize", ["x", "", "sc"], ["u"], name="up", mode="nearest"),
            helper.make_node("Concat", ["u", "u"], ["y"], name="cat", axis=1),
        ],
        [("x", [1, 2, 4, 4])],
        [("y", [1, 4, 8, 8])],
        {"sc": np.array([1, 1, 2, 2], np.float32)},
    )
    shape_ops = _model(
        [
            helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
            helper.make_node("Transpose", ["r"], ["t"], name="tr", perm=[0, 2, 1]),
            helper.make_node("Mul", ["t", "k"], ["m"], name="mul"),
            helper.make_node("Pad", ["m", "p"], ["y"], name="pad"),
        ],
        [("x", [1, 4, 6])],
        [("y", [1, 6, 6])],
        {"s": np.array([1, 4, 6], np.int64), "k": f(1, 6, 4), "p": np.array([0, 0, 1, 0, 0, 1], np.int64)},
    )
    return [conv, gemm, resize, shape_ops]


def _dims(vi: onnx.ValueInfoProto, rng: random.Random) -> None:
    dims = vi.type.tensor_type.shape.dim
    kind = rng.randrange(4)
    if kind == 0 and len(dims):
        dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 3, 7, 1000, HUGE])
    elif kind == 1 and len(dims):
        d = dims[rng.randrange(len(dims))]
        d.dim_param = "n"
    elif kind == 2:
        dims.add().dim_value = rng.choice([1, 2, 5])
    elif len(dims):
        del dims[rng.randrange(len(dims))]


def _attribute(m: onnx.ModelProto, rng: random.Random) -> None:
    node = rng.choice(m.graph.node)
    if node.attribute and rng.random() < 0.3:
        del node.attribute[rng.randrange(len(node.attribute))]
        return
    if node.attribute:
        a = node.attribute[rng.randrange(len(node.attribute))]
        if a.type == onnx.AttributeProto.INTS and len(a.ints):
            a.ints[rng.randrange(len(a.ints))] = rng.choice([0, -1, -5, 3, 17, 1 << 31, HUGE])
        elif a.type == onnx.AttributeProto.INT:
            a.i = rng.choice([0, -1, 2, 7, 1 << 31, HUGE])
        elif a.type == onnx.AttributeProto.STRING:
            a.s = rng.choice([b"", b"cubic", b"reflect", b"\x1b[2J"])
        else:
            a.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
        return
    name = rng.choice(["axis", "pads", "strides", "kernel_shape", "group", "alpha", "mode", "perm"])
    value = rng.choice([0, -1, 3, [1, 2], [0, 0, 0, 0], [HUGE], 0.5, "nearest"])
    node.attribute.append(helper.make_attribute(name, value))


def _initializer(m: onnx.ModelProto, rng: random.Random) -> None:
    if not m.graph.initializer:
        return
    i = rng.randrange(len(m.graph.initializer))
    t = m.graph.initializer[i]
    try:
        arr = numpy_helper.to_array(t).copy()
    except (ValueError, TypeError, KeyError):  # an earlier mutation broke it: drop it instead
        del m.graph.initializer[i]
        return
    kind = rng.randrange(6)
    if kind == 0 and arr.size:
        if arr.dtype.kind == "f":
            arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
        else:
            arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice([-1, 0, HUGE, -HUGE])
        t.CopyFrom(numpy_helper.from_array(arr, t.name))
    elif kind == 1 and len(t.dims):
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 2, 1000, HUGE])  # disagrees with the data
    elif kind == 2:
        t.CopyFrom(
            numpy_helper.from_array(arr.astype(rng.choice([np.float16, np.int32, np.float64])), t.name)
        )
    elif kind == 3:
        t.CopyFrom(numpy_helper.from_array(arr.reshape(-1), t.name))
    elif kind == 4:
        del m.graph.initializer[i]
    else:
        t.data_type = rng.choice([0, 8, 99])  # undefined / string / unknown


def _opset(m: onnx.ModelProto, rng: random.Random) -> None:
    if rng.random() < 0.2:
        rng.choice(m.graph.node).domain = "com.example"
    else:
        m.opset_import[0].version = rng.choice([0, 1, 7, 11, 13, 17, 21, 30])


def mutate(m: onnx.ModelProto, rng: random.Random) -> onnx.ModelProto:
    """A mutated copy of ``m`` (1-3 mutations, see the module docstring)."""
    out = onnx.ModelProto()
    out.CopyFrom(m)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(4)
        if kind == 0:
            _dims(rng.choice(list(out.graph.input) + list(out.graph.output)), rng)
        elif kind == 1:
            _attribute(out, rng)
        elif kind == 2:
            _initializer(out, rng)
        else:
            _opset(out, rng)
    return out


def run_case(m: onnx.ModelProto, quantize: bool) -> str:
    """``ok``, ``rejected`` or ``traceback:...`` for one model."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = espq.load(m)
            espq.check_model(graph, "esp32p4", 8, strict=False)
            if quantize:
                shapes = [graph.values[n].shape for n in graph.inputs]
                feeds = [np.random.default_rng(0).standard_normal(s).astype(np.float32) for s in shapes]
                batch = feeds if len(feeds) > 1 else feeds[0]
                qm = espq.quantize(graph, [batch], calib_steps=1, progress=False)
                espdl.write_bytes(build_espdl(qm, export_test_values=True))
        return "ok"
    except EspqError:
        return "rejected"
    except Exception:  # noqa: BLE001 - exactly what the fuzzer looks for
        return "traceback:\n" + traceback.format_exc()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int, help="number of mutated models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quantize", action="store_true", help="also calibrate one batch and export")
    ap.add_argument("--out", type=Path, default=ROOT / "tests" / "frontends" / "onnx_crashers")
    ap.add_argument("--slow", type=float, default=30.0, help="seconds after which a case counts as slow")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    seeds = seed_models()
    counts: Counter = Counter()
    for _ in range(args.n):
        m = mutate(rng.choice(seeds), rng)
        start = time.perf_counter()
        outcome = run_case(m, args.quantize)
        if time.perf_counter() - start > args.slow:
            counts["slow"] += 1
        if outcome.startswith("traceback"):
            counts["traceback"] += 1
            data = m.SerializeToString()
            key = hashlib.sha1(data).hexdigest()[:16]
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{key}.onnx").write_bytes(data)
            (args.out / f"{key}.txt").write_text(outcome)
            print(f"traceback {key}: {outcome.strip().splitlines()[-1]}")
        else:
            counts[outcome] += 1
    print(f"{args.n} mutated ONNX models (seed {args.seed}{', --quantize' if args.quantize else ''}):")
    for k in ("ok", "rejected", "traceback", "slow"):
        print(f"  {k}: {counts[k]}")


if __name__ == "__main__":
    main()
