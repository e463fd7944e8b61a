"""espq.espdl.config_json: ESP-PPQ's `.json` layout, compared with ESP-PPQ's own side files (§4.13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espq import espdl
from espq.espdl.config_json import config_json, config_json_text
from espq.ir.spec import DERIVED, QuantPlan, TensorSpec
from espq.targets.infer import infer_target

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REF = SHARED / "reference"
# the resnet20 exports and the (small-json) S3 MobileNetV2; the P4 MobileNetV2 json is 2 MB of the same
CASES = [
    "resnet20_c_s8",
    "resnet20_c_s16",
    "resnet20_esp32p4_s8",
    "resnet20_esp32p4_s16",
    "resnet20_esp32s3_s8",
    "resnet20_esp32s3_s16",
    "mobilenetv2_esp32s3_s8",
]
PLATFORM = {"c": "ESPDL_C_INT", "esp32p4": "ESPDL_INT", "esp32s3": "ESPDL_S3_INT"}


@pytest.mark.parametrize("stem", CASES)
def test_matches_esp_ppq_config(shared, stem: str):
    ref = json.loads(shared("reference", stem, f"{stem}.json").read_text())
    model = espdl.read(shared("reference", stem, f"{stem}.espdl"))
    ours = config_json(model)
    assert sorted(ours) == ["configs", "dispatchings", "values"]
    chip, bits = stem.split("_")[1], stem.split("_")[2][1:]
    assert infer_target(model).name == chip
    assert set(ours["dispatchings"].values()) == {PLATFORM[chip] + bits} == set(ref["dispatchings"].values())
    # the same ops (the quantized nodes minus inserted Requantize nodes) and variables, in node order
    assert list(ours["configs"]) == [op for op in (n.name for n in model.graph.nodes) if op in ref["configs"]]
    assert set(ours["configs"]) == set(ref["configs"])
    for op, variables in ref["configs"].items():
        assert list(ours["configs"][op]) == list(variables)
        for var, r in variables.items():
            o = ours["configs"][op][var]
            assert (o["bit_width"], o["policy"], o["quant_min"], o["quant_max"]) == (
                r["bit_width"],
                r["policy"],
                r["quant_min"],
                r["quant_max"],
            ), (op, var)
            assert (o["state"] == "FP32") == (r["state"] == "FP32"), (op, var)
            # the root config's scale is the same power of two (per channel: the same list)
            if r["state"] != "FP32":
                assert ours["values"][str(o["dominator"])] == ref["values"][str(r["dominator"])], (op, var)


def test_deterministic_sorted_text(shared):
    m = espdl.read(shared("reference", "resnet20_esp32p4_s8", "resnet20_esp32p4_s8.espdl"))
    text = config_json_text(m)
    assert text == config_json_text(
        espdl.read(shared("reference", "resnet20_esp32p4_s8", "resnet20_esp32p4_s8.espdl"))
    )
    d = json.loads(text)
    assert text == json.dumps(d, indent=4, sort_keys=True)
    hashes = [c["hash"] for vs in d["configs"].values() for c in vs.values()]
    assert len(hashes) == len(set(hashes))
    for vs in d["configs"].values():
        for c in vs.values():
            root = c["dominator"]
            assert (str(root) in d["values"]) == (c["state"] != "FP32")


def test_states_and_target_override(shared):
    m = espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    d = config_json(m, target="esp32s3")
    fc1 = d["configs"]["/fc1/Gemm"]
    assert [c["state"] for c in fc1.values()] == ["ACTIVATED", "ACTIVATED", "PASSIVE", "ACTIVATED"]
    assert fc1["fc1.bias"]["bit_width"] == 20  # S3 int8 bias bits (esp_ppq §2.1)
    fc2_in = d["configs"]["/fc2/Gemm"]["/Relu_output_0"]
    assert fc2_in["state"] == "OVERLAPPED" and fc2_in["dominator"] == fc1["/Relu_output_0"]["hash"]
    assert set(d["dispatchings"].values()) == {"ESPDL_S3_INT8"}
    assert d["values"][str(fc1["fc1.weight"]["hash"])] == {"scale": 2.0**-7, "zero_point": 0.0}
    assert config_json(m, target="esp32p4")["configs"]["/fc1/Gemm"]["fc1.bias"]["bit_width"] == 32


def test_plan_sets_states(shared):
    m = espdl.read(shared("espdl-zoo", "tutorial_3gemm_p4.espdl"))
    plan = QuantPlan(target="esp32p4", bits=8, tensors={"/Relu_output_0": TensorSpec(8, -4, source=DERIVED)})
    d = config_json(m, plan=plan)
    assert d["configs"]["/fc1/Gemm"]["/Relu_output_0"]["state"] == "PASSIVE"
    assert set(d["dispatchings"].values()) == {"ESPDL_INT8"}
