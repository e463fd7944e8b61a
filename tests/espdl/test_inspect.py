"""espq.espdl.inspect: zoo summaries, the activation-memory estimate, diff and the CLI helpers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from espq import espdl
from espq.espdl import EspdlTensor
from espq.espdl.diff import diff_cli, diff_models
from espq.espdl.inspect import (
    activation_memory,
    format_inspect,
    inspect_cli,
    inspect_model,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
ZOO = sorted((SHARED / "espdl-zoo").glob("*.espdl")) if (SHARED / "espdl-zoo").exists() else []
KEYS = {
    "target",
    "nodes",
    "inputs",
    "outputs",
    "param_bytes",
    "has_test_values",
    "op_counts",
    "exponent_range",
}


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_zoo_file(path: Path):
    m = espdl.read(path)
    d = inspect_model(path)
    assert KEYS <= set(d)
    assert d["file"] == str(path)
    assert len(d["nodes"]) == len(m.graph.nodes)
    assert sum(c["count"] for c in d["op_counts"]) == len(m.graph.nodes)
    # param_bytes = element bytes of every initializer, padding excluded
    expect = sum(t.numel * t.dtype.itemsize for t in m.graph.initializers.values())
    assert d["param_bytes"] == expect
    assert d["param_bytes_aligned"] - d["param_bytes"] < 16 * len(m.graph.initializers)
    assert d["activation_peak_bytes"] <= d["activation_arena_bytes"]
    assert d["violations"] == []
    assert json.loads(json.dumps(d)) == d  # JSON-friendly
    text = format_inspect(d)
    assert f"nodes:       {len(m.graph.nodes)}" in text and "validation: ok" in text


def test_mobilenetv2_p4(shared):
    d = inspect_model(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_p4.espdl"))
    assert d["target"] is None and d["inferred_target"] == "esp32p4"
    assert len(d["nodes"]) == 70 and d["num_initializers"] == 114
    assert d["nodes"][0] == {
        "name": "/features/features.0/features.0.0/Conv",
        "op_type": "Conv",
        "quant_type": "S8",
    }
    assert d["param_bytes"] == 3_542_004 and d["param_count"] == 3_487_824
    assert d["inputs"] == [{"name": "input.1", "shape": [1, 224, 224, 3], "dtype": "INT8", "exponent": -6}]
    assert d["outputs"] == [{"name": "466", "shape": [1, 1000], "dtype": "INT8", "exponent": -2}]
    assert d["op_counts"][:3] == [
        {"op_type": "Conv", "quant_type": "S8", "count": 52},
        {"op_type": "Add", "quant_type": "S8", "count": 10},
        {"op_type": "RequantizeLinear", "quant_type": "S8", "count": 4},
    ]
    # esp_dl_facts §7.1: activations -7..-2, weights -17..-7 with biases (e_in + e_w) down to -23
    assert d["exponent_range"] == {"activations": [-7, -2], "parameters": [-23, -7]}
    assert d["per_channel"] is True and d["luts"] == 0 and d["has_test_values"] is False
    # peak: the 112x112x96 expansion output (1 204 224 B) + its 112x112x24 block input kept for the Add
    assert d["activation_peak_bytes"] == 112 * 112 * 96 + 112 * 112 * 24


def test_mobilenetv2_s3_and_ocr(shared):
    d = inspect_model(shared("espdl-zoo", "imagenet_cls_mobilenetv2_s8_v1_s3.espdl"))
    assert (len(d["nodes"]), d["param_bytes"], d["per_channel"], d["inferred_target"]) == (
        71,
        3_542_009,
        False,
        None,  # per-tensor blocked weights fit esp32p4 and esp32s3 (issue 13 finding 9)
    )
    assert d["exponent_range"]["parameters"] == [-15, -7]
    d = inspect_model(shared("espdl-zoo", "pp_ocr_v6_rec_s16_p4.espdl"))
    assert (len(d["nodes"]), d["luts"], d["param_bytes"]) == (79, 15, 2_295_390)
    assert d["inputs"][0] == {"name": "x", "shape": [1, 48, 320, 3], "dtype": "INT16", "exponent": -14}
    assert {"op_type": "LUT", "quant_type": "S16", "count": 15} in d["op_counts"]


def test_activation_memory_tutorial(shared):
    # input [1,1] -> fc1 [1,64] -> fc2 [1,64] -> fc3 [1,1] (int8, 16-byte chunks): at fc2, fc1's and
    # fc2's outputs are both live -> 64 + 64; the greedy plan places the two 16-byte buffers beside them
    d = inspect_model(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    assert (d["activation_peak_bytes"], d["activation_arena_bytes"], d["activation_buffers"]) == (128, 128, 4)
    assert (
        d["has_test_values"] is True and d["test_inputs"] == ["onnx::Gemm_0"] and d["test_outputs"] == ["11"]
    )


def test_activation_memory_in_place(shared):
    m = espdl.read(shared("reference", "resnet20_esp32p4_s8", "resnet20_esp32p4_s8.espdl"))
    mem = activation_memory(m)
    # Add writes into the dying conv output and the LUT Relu into the Add output (§5.1 changed buffers):
    # a residual block at 32x32x16 int8 needs block input + conv1 output + conv2 output = 3 x 16 KiB
    assert mem["activation_peak_bytes"] == 3 * 32 * 32 * 16
    n_acts = len({v.name for v in m.graph.inputs} | {o for n in m.graph.nodes for o in n.outputs})
    # every Add, LUT Relu, Flatten and the RequantizeLinear (its input dies there) reuses its input buffer
    in_place = sum(1 for n in m.graph.nodes if n.op_type in ("Add", "Relu", "Flatten", "RequantizeLinear"))
    assert mem["activation_buffers"] == n_acts - in_place


def _edited(m: espdl.EspdlModel) -> espdl.EspdlModel:
    e = copy.deepcopy(m)
    g = e.graph
    g.nodes[0].attributes["activation"] = "Linear"
    w = g.initializers["fc2.weight"]
    vals = w.values()
    vals[:3] += 2
    g.initializers["fc2.weight"] = EspdlTensor.from_array(
        w.name, vals.reshape(w.dims), w.data_type, [-8], w.doc_string
    )
    g.value("/Relu_1_output_0").exponents = [-6]
    e.metadata_props["target"] = "esp32p4"
    t = g.test_outputs["11"]
    g.test_outputs["11"] = EspdlTensor.from_array(
        "11", t.values().reshape(1, 1) - 1, t.data_type, t.exponents
    )
    return e


def test_diff_models(shared):
    m = espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    assert diff_models(m, espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))) == []
    diffs = diff_models(m, _edited(m))
    assert diffs == [
        "metadata 'target': None != 'esp32p4'",
        "node 0 '/fc1/Gemm': attribute activation 'Relu' != 'Linear'",
        "value '/Relu_1_output_0': exponents [-5] != [-6]",
        "initializer 'fc2.weight': 1 of 1 exponents differ ([-7] vs [-8])",
        "initializer 'fc2.weight': 3 of 4096 codes differ, max |delta| 2",
        "test output '11': 1 of 1 codes differ, max |delta| 1",
    ]


def test_diff_node_sequence(shared):
    a = espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    b = copy.deepcopy(a)
    del b.graph.nodes[1]
    b.graph.nodes[1].op_type = "MatMul"
    diffs = diff_models(a, b)
    assert diffs[:3] == [
        "node count 3 != 2",
        "node 1 '/fc2/Gemm' (Gemm) only in A",
        "node 2 '/fc3/Gemm' / B node 1 '/fc3/Gemm': op Gemm != MatMul",
    ]


def test_inspect_cli(shared, capsys, tmp_path):
    path = shared("espdl-zoo", "tutorial_3gemm_p4.espdl")
    assert inspect_cli(path) == 0
    out = capsys.readouterr().out
    assert "nodes:       3" in out and "/fc2/Gemm" in out
    assert inspect_cli(path, as_json=True) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["file"] == str(path) and len(d["nodes"]) == 3
    bad = tmp_path / "bad.espdl"
    bad.write_bytes(b"junk" * 8)
    assert inspect_cli(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert inspect_cli(tmp_path / "missing.espdl", as_json=True) == 2
    assert "cannot read" in capsys.readouterr().err


def test_diff_cli(shared, capsys, tmp_path):
    path = shared("espdl-zoo", "tutorial_3gemm_p4.espdl")
    assert diff_cli(path, path) == 0
    assert "no differences" in capsys.readouterr().out
    edited = tmp_path / "edited.espdl"
    espdl.write(_edited(espdl.read(path)), edited)
    assert diff_cli(path, edited) == 1
    out = capsys.readouterr().out
    assert out.startswith("6 difference(s)") and "3 of 4096 codes differ" in out
    assert diff_cli(path, tmp_path / "missing.espdl") == 2
    assert "error: " in capsys.readouterr().err


def test_inspect_in_memory_model(shared):
    m = espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    m.graph.initializers["fc1.bias"].exponents = []
    d = inspect_model(m)
    assert d["file"] is None and len(d["violations"]) == 1
    assert "1 validation problem(s)" in format_inspect(d)
    assert np.isclose(d["param_count"], 1 * 64 + 64 + 64 * 64 + 64 + 64 + 1)
