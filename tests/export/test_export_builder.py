"""builder.build_model on small lowered states: parameter dtypes, dims, exponents, sharing, value infos."""

from __future__ import annotations

import numpy as np

from espq.espdl.schema import TensorDataType as DT
from espq.export.builder import build_model
from espq.export.lower import ExportState
from espq.ir import Graph, Node
from espq.ir.graph import TensorInfo
from espq.ir.spec import QuantPlan, TensorSpec
from espq.targets import get_target


def test_parameters_and_value_infos():
    nodes = [
        Node("clip", "Clip", ["x", "lo", "hi"], ["a"]),
        Node("r1", "Reshape", ["a", "shape"], ["b"]),
        Node("r2", "Reshape", ["b", "shape"], ["y"]),
        Node("f", "Mul", ["y", "k"], ["z"]),
    ]
    inits = {
        "lo": np.array(-0.3, np.float32),
        "hi": np.array(6.0, np.float32),
        "shape": np.array([1, 6], np.int64),
        "k": np.array(0.5, np.float32),
    }
    values = {"x": (1, 6), "a": (1, 6), "b": (1, 6), "y": (1, 6), "z": (1, 6)}
    g = Graph(nodes, inits, {k: TensorInfo(np.dtype(np.float32), v) for k, v in values.items()}, ["x"], ["z"])
    spec = TensorSpec(bits=8, exponent=-4)
    plan = QuantPlan(
        "esp32s3",
        8,
        {"clip": "S8", "r1": "S8", "r2": "S8", "f": "F32"},
        {"x": spec, "a": spec, "b": spec, "y": spec, "lo": spec, "hi": spec},
    )
    state = ExportState.from_model(g, plan, get_target("esp32s3"))
    m = build_model(state, {"target": "esp32s3"}, 2, "doc", "9.9")
    inits = m.graph.initializers
    # Clip bounds: int8 with the input exponent, scalars stored with dims [1]; -0.3*16 = -4.8 -> -5
    assert (inits["lo"].dims, inits["lo"].data_type, inits["lo"].exponents) == ([1], DT.INT8, [-4])
    assert inits["lo"].values().tolist() == [-5] and inits["hi"].values().tolist() == [96]
    # the shape constant read by two nodes is duplicated: one consumer per parameter
    r2 = m.graph.node("r2")
    assert r2.inputs[1] != "shape" and inits[r2.inputs[1]].values().tolist() == [1, 6]
    assert inits["shape"].data_type == DT.INT64 and inits["shape"].exponents == [0]
    assert (
        inits["k"].data_type == DT.FLOAT
        and inits["k"].dims == [1]
        and inits["k"].doc_string == "layout ==> UNK"
    )
    vis = {v.name: v for v in m.graph.value_info}
    assert list(vis) == ["x", "a", "b", "y", "z"]
    assert vis["y"].elem_type == DT.INT8 and vis["y"].exponents == [-4]
    assert vis["z"].elem_type == DT.FLOAT and vis["z"].exponents == [0]
    assert m.graph.inputs[0] == vis["x"] and m.graph.outputs[0] == vis["z"]
    assert (m.model_version, m.doc_string, m.producer_version, m.ir_version) == (2, "doc", "9.9", 8)
    assert all(n.attributes["quant_type"] in ("S8", "F32") for n in m.graph.nodes)
