"""Streaming export (issue 17 items 1-2): StreamingCache insertion and the chunk-by-chunk proof.

The proof: the offline export run once on a whole sequence and the streaming export run chunk by
chunk through :class:`IntegerRunner` (state kept, ``reset()`` between sequences) give the same int8
outputs frame for frame (exactly), for ESP-DL's tutorial TCN (our own equivalent of
examples/tutorial/how_to_deploy_streaming_model/quantize_streaming_model/models.py), a dilated causal
TCN, a valid-padding TCN (equal once the receptive field is filled) and a 4-D depthwise-separable
KWS-style model, at several chunk sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import espq
from espq.api import espdl_quantize_torch, insert_streaming_cache_on_var
from espq.errors import ConfigError, UnsupportedOpError
from espq.espdl import read
from espq.sim.integer.runner import IntegerRunner


# ---------------------------------------------------------------------------------------------- models
class CausalDS(nn.Module):
    """Depthwise (causal, left-padded with F.pad) + pointwise + BN + ReLU, as in the tutorial."""

    def __init__(self, ch: int, k: int, dilation: int):
        super().__init__()
        self.pad = (k - 1) * dilation
        self.depthwise = nn.Conv1d(ch, ch, k, dilation=dilation, groups=ch)
        self.pointwise = nn.Conv1d(ch, ch, 1)
        self.bn = nn.BatchNorm1d(ch)

    def forward(self, x):
        x = F.relu(self.depthwise(F.pad(x, (self.pad, 0))))
        return F.relu(self.bn(self.pointwise(x)))


class TutorialTCN(nn.Module):
    """ESP-DL tutorial's TCN: 1x1 in, 3 causal DS blocks (dilation 1, d, 1) with SiLU, residual add,
    causal average pool, 1x1 out, last ``frames`` frames flattened into a Linear."""

    def __init__(self, c_in=16, c=32, k=3, dilation=2, frames=3):
        super().__init__()
        self.prev_conv = nn.Conv1d(c_in, c, 1)
        self.layer = nn.Sequential(
            CausalDS(c, k, 1), nn.SiLU(), CausalDS(c, k, dilation), nn.SiLU(), CausalDS(c, k, 1), nn.SiLU()
        )
        self.k, self.frames = k, frames
        self.out_conv = nn.Conv1d(c, c_in, 1)
        self.linear = nn.Linear(c_in * frames, c_in)

    def forward(self, x):
        x = self.prev_conv(x)
        x = x + self.layer(x)
        x = F.avg_pool1d(F.pad(x, (self.k - 1, 0)), self.k, stride=1)
        x = self.out_conv(x)[:, :, -self.frames :]
        return self.linear(torch.flatten(x, 1))


class DilatedTCN(nn.Module):
    """Causal dilated conv stack (dilations 1, 2, 4), output one vector per frame; ``causal=False``
    uses valid convolutions (no padding: the output is shorter by the receptive field - 1)."""

    def __init__(self, c_in=8, c=16, k=3, dilations=(1, 2, 4), causal=True):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in if i == 0 else c, c, k, dilation=d) for i, d in enumerate(dilations)
        )
        self.pads = [(k - 1) * d if causal else 0 for d in dilations]
        self.head = nn.Conv1d(c, 4, 1)

    def forward(self, x):
        for conv, p in zip(self.convs, self.pads):
            x = F.relu(conv(F.pad(x, (p, 0)) if p else x))
        return self.head(x)


class KWS(nn.Module):
    """4-D depthwise-separable keyword spotter over [1, 1, T, F]: time causal (F.pad), frequency
    'same' (conv pads), mean over frequency, 1x1 classifier per frame."""

    def __init__(self, c=8, classes=5):
        super().__init__()
        self.stem = nn.Conv2d(1, c, (3, 3), padding=(0, 1))
        self.dw = nn.Conv2d(c, c, (3, 3), padding=(0, 1), dilation=(2, 1), groups=c)
        self.pw = nn.Conv2d(c, c, 1)
        self.cls = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        x = F.relu(self.stem(F.pad(x, (0, 0, 2, 0))))
        x = F.relu(self.pw(F.relu(self.dw(F.pad(x, (0, 0, 4, 0))))))
        return self.cls(x.mean(dim=3, keepdim=True))


def _quantize(model: nn.Module, shape: list[int], seed: int = 0) -> espq.QuantizedModel:
    torch.manual_seed(seed)
    model.eval()
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    return espq.quantize(model, data, target="esp32p4", bits=8, input_shape=shape, progress=False)


def _stream(runner: IntegerRunner, x: np.ndarray, axis: int, chunk: int) -> list[dict[str, np.ndarray]]:
    runner.reset()
    n = x.shape[axis]
    return [runner.run(np.take(x, np.arange(i, i + chunk), axis=axis)) for i in range(0, n, chunk)]


def _caches(path) -> list[tuple[int, int]]:
    return [
        (int(n.attr("window_size")), int(n.attr("frame_axis")))
        for n in read(path).graph.nodes
        if n.op_type == "StreamingCache"
    ]


# ---------------------------------------------------------------------------------------------- tests
def test_tutorial_tcn_streams_like_offline(tmp_path):
    torch.manual_seed(0)
    qm = _quantize(TutorialTCN(), [1, 16, 24])
    qm.export(tmp_path / "off.espdl", export_test_values=True)
    slice_op = next(n.name for n in qm.graph.nodes if n.op_type == "Slice")
    table = [
        insert_streaming_cache_on_var("/out_conv/Conv_output_0", 2),
        insert_streaming_cache_on_var("PPQ_Variable_0", 1, slice_op),  # ESP-PPQ's name: resolved by op
    ]
    qm.export(
        tmp_path / "st.espdl",
        export_test_values=True,
        streaming_input_shape=[1, 16, 3],
        auto_streaming=True,
        streaming_table=table,
    )
    m = read(tmp_path / "st.espdl")
    ops = [n.op_type for n in m.graph.nodes]
    assert "Pad" not in ops  # the causal F.pad nodes are replaced by the caches
    # depthwise k=3 d=1, d=2, d=1, causal avg pool k=3, the manual cache; NCW -> NWC: frame axis 1
    assert _caches(tmp_path / "st.espdl") == [(3, 1), (5, 1), (3, 1), (3, 1), (2, 1)]
    assert list(m.graph.inputs[0].shape) == [1, 3, 16]  # NWC chunk
    cache_of = {n.outputs[0]: n for n in m.graph.nodes if n.op_type == "StreamingCache"}
    vis = {v.name: v for v in m.graph.value_info}
    for out, node in cache_of.items():  # the cache takes its consumer's exponent; window-1 more frames
        consumer = next(n for n in m.graph.nodes if out in n.inputs)
        assert vis[out].exponent == vis[node.inputs[0]].exponent, consumer.name
        assert vis[out].shape[1] == vis[node.inputs[0]].shape[1] + int(node.attr("window_size")) - 1
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    rng = np.random.default_rng(7)
    for _ in range(3):  # reset() between sequences
        x = rng.standard_normal((1, 16, 24)).astype(np.float32)
        ref = off.run(x)
        outs = _stream(st, x, 2, 3)
        name = m.graph.outputs[0].name
        assert np.array_equal(outs[-1][name], ref[name])
        assert np.abs(ref[name]).max() > 0
    # embedded test values: the first chunk from a fresh state, replayable by Model::test()
    st.reset()
    test_in = m.graph.test_inputs[m.graph.inputs[0].name]
    got = st.run_q({m.graph.inputs[0].name: test_in.values().reshape(test_in.dims)}, raw=True)
    want = m.graph.test_outputs[name]
    assert np.array_equal(got[name].data.reshape(-1), want.values().reshape(-1))


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_dilated_causal_tcn_frame_for_frame(tmp_path, chunk):
    torch.manual_seed(1)
    qm = _quantize(DilatedTCN(), [1, 8, 16], seed=1)
    qm.export(tmp_path / "off.espdl")
    qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 8, chunk], auto_streaming=True)
    assert [w for w, _ in _caches(tmp_path / "st.espdl")] == [3, 5, 9]
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    rng = np.random.default_rng(chunk)
    for _ in range(2):
        x = rng.standard_normal((1, 8, 16)).astype(np.float32)
        ref = off.run(x)[out]
        got = np.concatenate([o[out] for o in _stream(st, x, 2, chunk)], axis=2)
        assert got.shape == ref.shape == (1, 4, 16)
        assert np.array_equal(got, ref)  # causal zero padding = zero-initialised caches: every frame


@pytest.mark.parametrize("chunk", [2, 5])
def test_valid_tcn_equal_once_receptive_field_filled(tmp_path, chunk):
    torch.manual_seed(2)
    qm = _quantize(DilatedTCN(causal=False), [1, 8, 30], seed=2)  # receptive field 1 + 2 + 4 + 8 = 15
    qm.export(tmp_path / "off.espdl")
    qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 8, chunk], auto_streaming=True)
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    x = np.random.default_rng(3).standard_normal((1, 8, 30)).astype(np.float32)
    ref = off.run(x)[out]
    assert ref.shape == (1, 4, 16)
    got = np.concatenate([o[out] for o in _stream(st, x, 2, chunk)], axis=2)
    assert np.array_equal(got[:, :, 14:], ref)  # stream frame t = offline frame t - 14
    assert not np.array_equal(got[:, :, :14], ref[:, :, :14])  # the warm-up frames differ


@pytest.mark.parametrize("chunk", [1, 4])
def test_kws_depthwise_separable_4d(tmp_path, chunk):
    torch.manual_seed(3)
    qm = _quantize(KWS(), [1, 1, 16, 10], seed=3)
    qm.export(tmp_path / "off.espdl")
    qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 1, chunk, 10], auto_streaming=True)
    # stem k=3 (window 3) on the graph input, depthwise k=3 dilation 2 (window 5); the input cached in
    # front of a Conv is NHWC as in ESP-PPQ (no Transpose): NCHW time axis 2 -> NHWC axis 1
    assert _caches(tmp_path / "st.espdl") == [(3, 1), (5, 1)]
    m = read(tmp_path / "st.espdl")
    assert list(m.graph.inputs[0].shape) == [1, chunk, 10, 1]
    assert "Transpose" not in [n.op_type for n in m.graph.nodes]
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    x = np.random.default_rng(4).standard_normal((1, 1, 16, 10)).astype(np.float32)
    ref = off.run(x)[out]
    got = np.concatenate([o[out] for o in _stream(st, x, 2, chunk)], axis=2)
    assert got.shape == ref.shape == (1, 5, 16, 1)
    assert np.array_equal(got, ref)


class _Pooled(nn.Module):
    def __init__(self, pad=(2, 0)):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3)
        self.pad = pad

    def forward(self, x):
        return self.conv(F.pad(x, self.pad)).mean(dim=2)


class _SamePadded(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_reduction_over_frames_is_an_error_naming_the_node(tmp_path):
    qm = _quantize(_Pooled(), [1, 4, 8])
    with pytest.raises(UnsupportedOpError, match="ReduceMean.*insert_streaming_cache_on_var") as err:
        qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 2], auto_streaming=True)
    assert "node '" in str(err.value) and "reduces across the streaming frame axis" in str(err.value)
    assert not (tmp_path / "st.espdl").exists()


def test_future_padding_is_an_error_naming_the_node(tmp_path):
    qm = _quantize(_SamePadded(), [1, 4, 8])
    with pytest.raises(
        UnsupportedOpError, match=r"node '/conv/Conv' \(Conv\) pads 1 frame\(s\) on the future"
    ):
        qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 2], auto_streaming=True)

    class PadPool(nn.Module):  # a Pad in front of a pool stays a Pad node in espq's IR
        def forward(self, x):
            return F.avg_pool1d(F.pad(x, (1, 1)), 3, stride=1)

    qm2 = _quantize(PadPool(), [1, 4, 8])
    assert "Pad" in [n.op_type for n in qm2.graph.nodes]
    with pytest.raises(
        UnsupportedOpError, match=r"node '.*Pad' \(Pad\) pads 1 frame\(s\) on the future side"
    ):
        qm2.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 2], auto_streaming=True)


def test_streaming_shape_must_differ_in_one_dim(tmp_path):
    qm = _quantize(_SamePadded(), [1, 4, 8])
    for bad in ([1, 2, 2], [1, 4, 8], [1, 4]):
        with pytest.raises(ConfigError, match="differ in exactly one dimension"):
            qm.export(tmp_path / "st.espdl", streaming_input_shape=bad, auto_streaming=True)
    with pytest.raises(ConfigError, match="needs streaming_input_shape"):
        qm.export(tmp_path / "st.espdl", auto_streaming=True)
    with pytest.raises(ConfigError, match="no tensor named 'nope'"):
        qm.export(
            tmp_path / "st.espdl",
            streaming_input_shape=[1, 4, 2],
            streaming_table=[insert_streaming_cache_on_var("nope", 3)],
        )


def test_strided_conv_needs_a_multiple_of_its_stride(tmp_path):
    class Strided(nn.Module):
        def __init__(self, past: int):
            super().__init__()
            self.conv = nn.Conv1d(4, 4, 4, stride=2)
            self.past = past

        def forward(self, x):
            return self.conv(F.pad(x, (self.past, 0)))

    with pytest.raises(UnsupportedOpError, match="strides the frame axis by 2 after 2 frame"):
        _quantize(Strided(2), [1, 4, 16]).export(
            tmp_path / "st.espdl", streaming_input_shape=[1, 4, 4], auto_streaming=True
        )  # window 4 but 2 past frames: the stream would sample odd instead of even frames
    qm = _quantize(Strided(3), [1, 4, 16])
    with pytest.raises(ConfigError, match="strides the frame axis by 2 but gets 3"):
        qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 3], auto_streaming=True)
    qm.export(tmp_path / "off.espdl")
    qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 4, 4], auto_streaming=True)
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    x = np.random.default_rng(5).standard_normal((1, 4, 16)).astype(np.float32)
    ref = off.run(x)[out]
    got = np.concatenate([o[out] for o in _stream(st, x, 2, 4)], axis=2)
    assert got.shape == ref.shape == (1, 4, 8)
    assert np.array_equal(got, ref)


def test_espdl_quantize_torch_accepts_the_tutorial_arguments(tmp_path):
    """ESP-DL's quantize_torch_model.py second call, with espq.api."""
    torch.manual_seed(0)
    model = TutorialTCN().eval()
    x = torch.randn(1, 16, 24)
    loader = [x]
    common = dict(calib_steps=2, input_shape=[1, 16, 24], target="esp32p4", num_of_bits=8, error_report=False)
    qm = espdl_quantize_torch(model, str(tmp_path / "model.espdl"), loader, export_test_values=True, **common)
    assert "/Slice" not in [n.name for n in qm.graph.nodes]  # espq's export names it /Slice_1
    table = [  # ESP-DL's table verbatim: the marker names nothing of espq's graph and is ignored, the
        # cache on /out_conv/Conv_output_0 already hands its reader (the Slice) to the user
        insert_streaming_cache_on_var("/out_conv/Conv_output_0", 2),
        insert_streaming_cache_on_var("PPQ_Variable_0", 1, "/Slice"),
    ]
    espdl_quantize_torch(
        model,
        str(tmp_path / "streaming_model.espdl"),
        loader,
        export_test_values=True,
        auto_streaming=True,
        streaming_input_shape=[1, 16, 3],
        streaming_table=table,
        **common,
    )
    assert len(_caches(tmp_path / "streaming_model.espdl")) == 5
    for name in ("model.espdl", "streaming_model.espdl"):  # run --check on the embedded test values
        runner = IntegerRunner(tmp_path / name)
        m = runner.model.graph
        raw = {k: v.values().reshape(v.dims) for k, v in m.test_inputs.items()}
        got = runner.run(raw, raw=True)
        for k, v in m.test_outputs.items():
            assert np.array_equal(got[k].reshape(-1), v.values().reshape(-1)), (name, k)


# ------------------------------------------------------------------ Espressif's streaming zoo pairs
def _cache_rows(model) -> list[tuple]:
    vis = {v.name: v for v in model.graph.value_info}
    return [
        (n.name, int(n.attr("window_size")), int(n.attr("frame_axis")), vis[n.inputs[0]].exponent,
         vis[n.outputs[0]].exponent)
        for n in model.graph.nodes
        if n.op_type == "StreamingCache"
    ]  # fmt: skip


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_zoo_streaming_pair_matches_espressif(shared, target, tmp_path):
    """espq's streaming export of Espressif's offline tutorial ONNX, with the exponents of Espressif's
    offline file (plan_from_espdl), equals Espressif's streaming file in caches (names, windows,
    frame axes, exponents) and ops. Differences on purpose: espq fuses Sigmoid+Mul into Swish and
    slices in NWC before the Transpose (ESP-PPQ transposes first); espq writes the chunk shapes
    (5 = 3 + window − 1 frames), ESP-PPQ keeps the offline ones (26 = 24 + 2)."""
    from collections import Counter

    from espq.export import plan_from_espdl
    from espq.quant.model import QuantizedModel

    onnx_path = shared("espdl-zoo", f"streaming_{target}_model.onnx")
    ref_off = read(shared("espdl-zoo", f"streaming_{target}_model.espdl"))
    ref_st = read(shared("espdl-zoo", f"streaming_{target}_streaming_model.espdl"))
    data = [np.random.default_rng(0).standard_normal((1, 16, 24)).astype(np.float32)]
    qm = espq.quantize(str(onnx_path), data, target=target, bits=8, progress=False)
    plan, unmatched = plan_from_espdl(qm.graph, qm.plan, ref_off)
    assert unmatched == []
    qm = QuantizedModel(qm.graph, plan, qm.target)
    table = [  # quantize_torch_model.py's table, verbatim
        insert_streaming_cache_on_var("/out_conv/Conv_output_0", 2),
        insert_streaming_cache_on_var("PPQ_Variable_0", 1, "/Slice"),
    ]
    opts = dict(streaming_input_shape=[1, 16, 3], auto_streaming=True, streaming_table=table)
    qm.export(tmp_path / "off.espdl")
    ours = qm.export(tmp_path / "st.espdl", **opts)
    ours_off, ours_st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    assert _cache_rows(ours) == _cache_rows(ref_st)
    assert len(_cache_rows(ours)) == 5
    ops = [n.op_type for n in ours.graph.nodes]
    expanded = Counter(o for op in ops for o in (["Sigmoid", "Mul"] if op == "Swish" else [op]))
    assert expanded == Counter(n.op_type for n in ref_st.graph.nodes)
    vis = {v.name: v for v in ours.graph.value_info}
    for n in ours.graph.nodes:
        if n.op_type == "StreamingCache":
            assert vis[n.outputs[0]].shape[1] == 3 + int(n.attr("window_size")) - 1
    # chunk by chunk (8 chunks of 3 frames): Espressif's streaming file == Espressif's offline file,
    # and espq's streaming file == espq's offline file, exactly (the runner's StreamingCache semantics)
    ref_off_r = IntegerRunner(shared("espdl-zoo", f"streaming_{target}_model.espdl"), target=target)
    ref_st_r = IntegerRunner(shared("espdl-zoo", f"streaming_{target}_streaming_model.espdl"), target=target)
    x = np.random.default_rng(1).standard_normal((1, 16, 24)).astype(np.float32)
    name = ref_off_r.output_names[0]
    assert np.array_equal(_stream(ref_st_r, x, 2, 3)[-1][name], ref_off_r.run(x)[name])
    assert np.array_equal(_stream(ours_st, x, 2, 3)[-1][name], ours_off.run(x)[name])


def test_custom_passes_run_on_the_chunk_graph_before_the_caches(tmp_path):
    torch.manual_seed(1)
    qm = _quantize(DilatedTCN(), [1, 8, 16], seed=1)
    seen = []

    def record(graph):  # a plain callable returning None keeps the graph
        seen.append((graph.shape(graph.inputs[0]), [n.op_type for n in graph.nodes].count("StreamingCache")))

    class DropHeadBias:  # an object with .apply returning a (new) graph, as a StreamingGraphPass
        def apply(self, graph):
            head = next(n for n in graph.nodes if n.name == "/head/Conv")
            graph.initializers[head.inputs[2]] = np.zeros_like(graph.initializers[head.inputs[2]])
            return graph

    qm.export(
        tmp_path / "st.espdl",
        streaming_input_shape=[1, 8, 2],
        auto_streaming=True,
        streaming_custom_passes=[record, DropHeadBias()],
    )
    assert seen == [((1, 8, 2), 0)]
    m = read(tmp_path / "st.espdl")
    bias = next(n for n in m.graph.nodes if n.name == "/head/Conv").inputs[2]
    assert not np.any(m.graph.initializers[bias].values())
    assert np.any(qm.graph.initializers[bias])  # the quantized model itself is not changed
    with pytest.raises(ConfigError, match="neither callable"):
        qm.export(tmp_path / "x.espdl", streaming_input_shape=[1, 8, 2], streaming_custom_passes=[3])


def test_cli_quantize_streaming_input_shape(tmp_path):
    from typer.testing import CliRunner

    from espq.cli import app
    from espq.frontends import export_torch

    torch.manual_seed(1)
    onnx_path = tmp_path / "tcn.onnx"
    model = DilatedTCN().eval()
    onnx_path.write_bytes(export_torch(model, input_shape=[1, 8, 16]).SerializeToString())
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((8, 8, 16)).astype(np.float32))
    out = tmp_path / "tcn_stream.espdl"
    args = ["quantize", onnx_path, "--calib", calib, "--steps", "2", "--batch-size", "4", "--out", out]
    r = CliRunner().invoke(app, [str(a) for a in args + ["--streaming-input-shape", "1", "8", "2"]])
    assert r.exit_code == 0, r.output
    assert [w for w, _ in _caches(out)] == [3, 5, 9]
    assert list(read(out).graph.inputs[0].shape) == [1, 2, 8]  # NWC: the input is cached before a Conv
    r = CliRunner().invoke(app, ["run", str(out), "--check"])
    assert r.exit_code == 0 and "PASS" in r.output, r.output
    r = CliRunner().invoke(
        app, [str(a) for a in args + ["--force", "--streaming-input-shape", "1", "4", "2"]]
    )
    assert r.exit_code == 2 and "differ in exactly one dimension" in r.output


def test_table_entry_on_a_tensor_without_frames_is_an_error(tmp_path):
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(4, 4, 1)
            self.gate = nn.Conv1d(4, 4, 1)

        def forward(self, x, g):  # g is not streamed: it keeps its shape
            return self.conv(x) * torch.sigmoid(self.gate(g))

    torch.manual_seed(0)
    model = TwoInputs().eval()
    rng = np.random.default_rng(0)
    data = [
        (rng.standard_normal((1, 4, 8)).astype(np.float32), rng.standard_normal((1, 4, 1)).astype(np.float32))
    ]
    qm = espq.quantize(
        model, data, target="esp32p4", bits=8, input_shape=[[1, 4, 8], [1, 4, 1]], progress=False
    )
    gate_out = next(n.outputs[0] for n in qm.graph.nodes if n.name == "/gate/Conv")
    with pytest.raises(ConfigError, match=f"tensor '{gate_out}'.*does not carry the streamed frame axis"):
        qm.export(
            tmp_path / "st.espdl",
            streaming_input_shape={qm.graph.inputs[0]: [1, 4, 2]},
            auto_streaming=True,
            streaming_table=[insert_streaming_cache_on_var(gate_out, 3)],
        )
    qm.export(
        tmp_path / "st.espdl", streaming_input_shape={qm.graph.inputs[0]: [1, 4, 2]}, auto_streaming=True
    )
    assert list(read(tmp_path / "st.espdl").graph.inputs[1].shape) == [1, 1, 4]  # NWC, not streamed
    qm.export(tmp_path / "off.espdl")
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    x, g = (
        rng.standard_normal((1, 4, 8)).astype(np.float32),
        rng.standard_normal((1, 4, 1)).astype(np.float32),
    )
    out = off.output_names[0]
    got = np.concatenate([st.run([x[:, :, i : i + 2], g])[out] for i in range(0, 8, 2)], axis=2)
    assert np.array_equal(got, off.run([x, g])[out])


@pytest.mark.parametrize(("target", "bits"), [("esp32s3", 8), ("c", 8), ("esp32s3", 16)])
def test_streaming_exact_on_other_targets_and_int16(tmp_path, target, bits):
    torch.manual_seed(0)
    model = DilatedTCN().eval()
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((1, 8, 16)).astype(np.float32) for _ in range(4)]
    qm = espq.quantize(model, data, target=target, bits=bits, input_shape=[1, 8, 16], progress=False)
    qm.export(tmp_path / "off.espdl")
    qm.export(
        tmp_path / "st.espdl", streaming_input_shape=[1, 8, 4], auto_streaming=True, export_test_values=True
    )
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    x = rng.standard_normal((1, 8, 16)).astype(np.float32)
    got = np.concatenate([o[out] for o in _stream(st, x, 2, 4)], axis=2)
    assert np.array_equal(got, off.run(x)[out])  # the same runner on both files: exact also at int16
    st.reset()  # embedded test values (first chunk, zero caches) replay on the runner
    g = st.model.graph
    res = st.run({k: v.values().reshape(v.dims) for k, v in g.test_inputs.items()}, raw=True)
    assert all(np.array_equal(res[k].reshape(-1), v.values().reshape(-1)) for k, v in g.test_outputs.items())


def test_cache_takes_the_exponent_its_consumer_expects(tmp_path):
    """A Requantize the consumer needed moves in front of the cache; the cache carries the consumer's
    exponent, and the stream still equals the offline export."""
    import dataclasses

    torch.manual_seed(1)
    qm = _quantize(DilatedTCN(), [1, 8, 16], seed=1)
    conv = [n for n in qm.graph.nodes if n.op_type == "Conv"][1]
    spec = qm.plan.tensors[conv.inputs[0]]
    want = dataclasses.replace(spec, exponent=spec.exponent + 1, group=None, ref=())
    qm.plan.requant[f"{conv.name}:0"] = want
    qm.export(tmp_path / "off.espdl")
    qm.export(tmp_path / "st.espdl", streaming_input_shape=[1, 8, 4], auto_streaming=True)
    m = read(tmp_path / "st.espdl")
    vis = {v.name: v for v in m.graph.value_info}
    cache = next(
        n for n in m.graph.nodes if n.op_type == "StreamingCache" and n.outputs[0] in _inputs_of(m, conv)
    )
    producer = next(n for n in m.graph.nodes if cache.inputs[0] in n.outputs)
    assert producer.op_type == "RequantizeLinear"
    assert vis[producer.inputs[0]].exponent == spec.exponent
    assert vis[cache.outputs[0]].exponent == vis[cache.inputs[0]].exponent == want.exponent
    off, st = IntegerRunner(tmp_path / "off.espdl"), IntegerRunner(tmp_path / "st.espdl")
    out = off.output_names[0]
    x = np.random.default_rng(0).standard_normal((1, 8, 16)).astype(np.float32)
    got = np.concatenate([o[out] for o in _stream(st, x, 2, 4)], axis=2)
    assert np.array_equal(got, off.run(x)[out])


def _inputs_of(model, conv) -> list[str]:
    """The inputs of the exported node named like ``conv`` (fused Relu keeps the Conv's name)."""
    return next(n for n in model.graph.nodes if n.name == conv.name).inputs
