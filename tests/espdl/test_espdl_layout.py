"""Weight layout undo (esp_dl_facts.md §2.5) checked three ways: host recomputation of embedded Gemm
test outputs, ONNX float weights of Espressif's op tests, and synthetic forward layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from espq import espdl
from espq.espdl.layout import parse_layout, to_original

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
GEMMS = sorted((SHARED / "espdl-zoo").glob("optest_*_gemm_*.espdl")) + sorted(
    (SHARED / "espdl-zoo").glob("tutorial_3gemm_*.espdl")
)


def _shift_round(acc: np.ndarray, s: int, half_even: bool) -> np.ndarray:
    """acc / 2**s rounded like the target (esp_dl_facts.md §4.1)."""
    if s <= 0:
        return acc * (1 << -s)
    q = acc >> s
    r = acc - (q << s)
    half = 1 << (s - 1)
    if half_even:
        return q + ((r > half) | ((r == half) & (q % 2 == 1)))
    return (acc + half) >> s


def _run_gemms(model: espdl.EspdlModel, half_even: bool, naive: bool = False) -> dict[str, np.ndarray]:
    g = model.graph
    exps = {v.name: v.exponent for v in g.value_info}
    env = {k: t.values().reshape(t.dims).astype(np.int64) for k, t in g.test_inputs.items()}
    for node in g.nodes:
        assert node.op_type == "Gemm"
        x = env[node.inputs[0]]
        wt = g.initializers[node.inputs[1]]
        c, n = wt.dims[2], wt.dims[3]
        w = wt.values().reshape(n, c) if naive else model.original_weight(wt.name)
        acc = x @ w.astype(np.int64).T
        if len(node.inputs) > 2:
            acc = acc + g.initializers[node.inputs[2]].values().astype(np.int64)
        shift = exps[node.outputs[0]] - exps[node.inputs[0]] - wt.exponents[0]
        y = _shift_round(acc, shift, half_even)
        if node.attr("activation") == "Relu":
            y = np.maximum(y, 0)
        env[node.outputs[0]] = np.clip(y, -128, 127)
    return env


@pytest.mark.parametrize("path", GEMMS, ids=lambda p: p.stem)
def test_gemm_weight_undo_reproduces_embedded_test_output(path: Path):
    model = espdl.read(path)
    target = model.target or ("esp32p4" if path.stem.endswith("_p4") else "esp32s3")
    half_even = target == "esp32p4"  # S3 and C round half up (§4.1)
    env = _run_gemms(model, half_even)
    for name, expected in model.graph.test_outputs.items():
        assert np.array_equal(env[name], expected.values().reshape(expected.dims)), name
    # the check has power: the stored order read naively does not reproduce the outputs
    layout = model.graph.initializers[model.graph.nodes[0].inputs[1]].layout
    if layout != "NHWC":
        naive = _run_gemms(model, half_even, naive=True)
        assert any(
            not np.array_equal(naive[k], v.values().reshape(v.dims))
            for k, v in model.graph.test_outputs.items()
        )


def test_optest_weights_match_onnx_float_weights(shared):
    """Every Conv/Gemm/MatMul filter of the op tests, undone and dequantised, is within half a
    quantisation step of the float weight in the sibling .onnx (ConvTranspose is decomposed by the
    exporter, so its filter is not the ONNX one)."""
    root = shared("espdl-optests")
    checked: dict[str, int] = {}
    for path in sorted(root.glob("*/*/*.espdl")):
        onnx_path = path.with_suffix(".onnx")
        if path.parent.name == "ConvTranspose" or not onnx_path.exists():
            continue
        model = espdl.read(path)
        proto = onnx.load(str(onnx_path))
        floats = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in proto.graph.initializer}
        for name, t in model.graph.initializers.items():
            if t.layout in (None, "UNK") or name not in floats:
                continue
            op = model.graph.consumers(name)[0]
            ref = floats[name]
            if op.op_type == "Gemm":
                onnx_gemm = next(n for n in proto.graph.node if n.op_type == "Gemm")
                trans_b = next((a.i for a in onnx_gemm.attribute if a.name == "transB"), 0)
                ref = ref if trans_b else ref.T  # original_weight returns [N, C]
            w = model.original_weight(name).astype(np.float64)
            assert w.shape == ref.shape, (path, name)
            e = np.asarray(t.exponents, dtype=np.float64)
            step = 2.0**e if e.size == 1 else (2.0**e).reshape((-1,) + (1,) * (w.ndim - 1))
            err = np.abs(w * step - ref) / step
            assert err.max() <= 0.5 + 1e-6, (path, name, float(err.max()))
            checked[t.layout] = checked.get(t.layout, 0) + 1
    assert sum(checked.values()) == 144
    assert set(checked) == {
        "(N/16)HWC16",
        "(N/16)HWC16_UNALIGNED",
        "(N/8)HWC8",
        "(N/8)HWC8_UNALIGNED",
        "(N/16)WC16",
        "(N/16)WC16_UNALIGNED",
        "(N/8)WC8",
        "(N/8)WC8_UNALIGNED",
        "NHWC",
        "NWC",
        "HWCN",
        "WCN",
    }


# -- synthetic forward layouts, written from the facts' prose (independent of espq.espdl.layout) --
def _blocked(w_nsc: np.ndarray, a: int) -> np.ndarray:
    n = w_nsc.shape[0]
    out = []
    for b in range(n // a):
        for s in range(w_nsc.shape[1]):
            for c in range(w_nsc.shape[2]):
                out.extend(w_nsc[b * a : b * a + a, s, c])
    out.extend(w_nsc[n // a * a :].reshape(-1))
    return np.array(out)


def _blocked_dw(w_ns: np.ndarray, a: int) -> np.ndarray:
    n = w_ns.shape[0]
    out = []
    for b in range(n // a):
        for s in range(w_ns.shape[1]):
            out.extend(w_ns[b * a : b * a + a, s])
    out.extend(w_ns[n // a * a :].T.reshape(-1))
    return np.array(out)


@pytest.mark.parametrize("n", [1, 8, 16, 20, 40])
@pytest.mark.parametrize("a", [16, 8])
def test_synthetic_regular_conv(n: int, a: int):
    c, kh, kw = 3, 2, 3
    onnx_w = np.arange(n * c * kh * kw).reshape(n, c, kh, kw)
    nsc = onnx_w.transpose(0, 2, 3, 1).reshape(n, kh * kw, c)
    suffix = "_UNALIGNED" if n % a else ""
    got = to_original(_blocked(nsc, a), [kh, kw, c, n], f"(N/{a})HWC{a}{suffix}", "Conv", False)
    assert np.array_equal(got, onnx_w)
    got1d = to_original(_blocked(nsc, a), [kh * kw, c, n], f"(N/{a})WC{a}{suffix}", "Conv", False)
    assert np.array_equal(got1d, onnx_w.reshape(n, c, kh * kw))
    plain = to_original(nsc.reshape(-1), [kh, kw, c, n], "NHWC", "Conv", False)
    assert np.array_equal(plain, onnx_w)


@pytest.mark.parametrize("n", [3, 16, 27, 40])
def test_synthetic_depthwise_conv(n: int):
    kh, kw = 3, 3
    onnx_w = np.arange(n * kh * kw).reshape(n, 1, kh, kw)
    ns = onnx_w.reshape(n, kh * kw)
    got = to_original(_blocked_dw(ns, 16), [kh, kw, n, 1], "(N/16)HWC16_UNALIGNED", "Conv")  # inferred
    assert np.array_equal(got, onnx_w)
    hwcn = to_original(ns.T.reshape(-1), [kh, kw, n, 1], "HWCN", "Conv", True)
    assert np.array_equal(hwcn, onnx_w)


def test_synthetic_gemm_and_matmul():
    n, c = 20, 5
    w_nc = np.arange(n * c).reshape(n, c)
    stored = _blocked(w_nc.reshape(n, 1, c), 16)
    assert np.array_equal(to_original(stored, [1, 1, c, n], "(N/16)HWC16_UNALIGNED", "Gemm"), w_nc)
    batch = np.stack([w_nc, w_nc + 1000])  # MatMul constant [2, C, N] laid out slice by slice
    stored_mm = np.concatenate([_blocked(b.reshape(n, 1, c), 16) for b in batch])
    got = to_original(stored_mm, [2, c, n], "(N/16)HWC16_UNALIGNED", "MatMul")
    assert np.array_equal(got, batch.transpose(0, 2, 1))


def test_layout_names_and_natural_tensors():
    assert parse_layout("(N/16)HWC16_UNALIGNED") == ("blocked", 16)
    assert parse_layout("N16HWC16") == ("blocked", 16)  # legacy spelling (tutorial models)
    assert parse_layout("(N/8)WC8") == ("blocked", 8)
    assert parse_layout("UNK") == parse_layout(None) == ("natural", 0)
    t = espdl.EspdlTensor.from_array("b", np.arange(6, dtype=np.int32).reshape(2, 3), 6, [-3])
    assert t.to_original().shape == (2, 3) and np.allclose(t.dequantized(), np.arange(6).reshape(2, 3) / 8)
    with pytest.raises(espdl.EspdlFormatError, match="dims"):
        to_original(np.arange(10), [1, 1, 3, 4], "(N/16)HWC16", "Gemm")


def test_per_channel_dequantized(shared):
    m = espdl.read(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl"))
    w = m.graph.initializers["onnx::Conv_468"]
    deq = w.dequantized()
    ints = w.to_original()
    assert deq.shape == (32, 3, 3, 3)
    for ch in (0, 17, 31):
        assert np.array_equal(deq[ch], ints[ch] * 2.0 ** w.exponents[ch])
