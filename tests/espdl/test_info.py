"""espq.espdl.info: the `.info` text equals ESP-PPQ's own side files byte for byte (esp_ppq_facts §4.12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from espq import espdl
from espq.espdl import EspdlNode, EspdlTensor, EspdlValueInfo, TensorDataType
from espq.espdl.info import info_text, tensor_value_text, value_info_text

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WITH_INFO = sorted((SHARED / "reference").glob("*/*.info")) if (SHARED / "reference").exists() else []


@pytest.mark.parametrize("info", WITH_INFO, ids=lambda p: p.stem)
def test_info_equals_esp_ppq_file(info: Path):
    model = espdl.read(info.with_suffix(".espdl"))
    assert info_text(model) == info.read_text()


def test_sections_and_metadata(shared):
    m = espdl.read(shared("espdl-zoo", "optest_esp32p4_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl"))
    text = info_text(m)
    assert text.startswith("model properties:\nmetadata_props:\ntarget: esp32p4\n\n\ngraph main_graph (\n")
    assert not text.endswith("\n")
    heads = ["initializers value:", "values info:", "test inputs value:", "test outputs value:"]
    positions = [text.index("\n\n\n" + h + "\n") for h in heads]
    assert positions == sorted(positions)
    w = next(t for t in m.graph.initializers.values() if t.data_type == TensorDataType.INT8)
    assert f"%{w.name}[INT8, {'x'.join(map(str, w.dims))}]" in text
    assert f"docString: b'layout ==> {w.layout}', \nvalue: array([" in text


def test_node_line_formats():
    node = EspdlNode(
        "n",
        "LeakyRelu",
        ["x", ""],
        ["y", "z"],
        {
            "quant_type": "S8",
            "alpha": 0.10000000149011612,
            "ints": [1, -2],
            "names": ["a", "b"],
            "s": "q" * 70,
        },
    )
    g = espdl.EspdlGraph("g", nodes=[node])
    text = info_text(espdl.EspdlModel(g))
    line = next(x for x in text.splitlines() if x.startswith("  %y"))
    assert line == (
        "  %y, %z = LeakyRelu[alpha = 0.100000001490116, ints = [1, -2], names = ['a', 'b'], "
        "quant_type = 'S8', "
        f"s = '{'q' * 64}...<+len=6>'](%x, %)"
    )
    assert "graph g {\n" in text and "  return\n}" in text


def test_value_info_and_tensor_padding():
    v = EspdlValueInfo("a", TensorDataType.INT16, [1, "N", None], [-3])
    assert value_info_text(v) == "%a[INT16, 1xb'N'x?], exponents: [-3]"
    assert value_info_text(EspdlValueInfo("s", TensorDataType.FLOAT, [], [])) == "%s[FLOAT, scalar]"
    t = EspdlTensor.from_array("w", [1, -2, 3], TensorDataType.INT8, [-7])
    # an in-memory tensor is printed with the zero padding the writer adds (16 bytes)
    assert tensor_value_text(t) == (
        "%w, shape: [3], exponents: [-7], \n"
        "value: array([ 1, -2,  3,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,"
        "  0],\n      dtype=int8)"
    )
