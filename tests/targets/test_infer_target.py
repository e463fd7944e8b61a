"""Issue 13 finding 9: a file without a metadata target is given only the target its data proves.

Espressif's per-tensor P4 zoo files (blocked layout, one exponent per weight, biases inside S3's 20 bits)
could be S3 files as well: ``espq inspect`` says "unknown" with both candidates instead of
"esp32s3 (inferred)", and running one without a target names the candidates instead of guessing."""

from __future__ import annotations

import pytest

from espq.cli import app
from espq.errors import ConfigError
from espq.espdl import read
from espq.espdl.inspect import format_inspect, inspect_model
from espq.sim.integer import IntegerRunner
from espq.targets.infer import infer_target, proven_target, target_candidates

AMBIGUOUS = [
    "human_face_detect_msr_s8_v1_p4.espdl",
    "tutorial_3gemm_p4.espdl",
    "streaming_esp32p4_model.espdl",
    "streaming_esp32p4_streaming_model.espdl",
    "imagenet_cls_mobilenetv2_s8_v1_s3.espdl",
]
PROVEN = {
    "imagenet_cls_mobilenetv2_s8_v1_p4.espdl": "esp32p4",  # per-channel weights
    "coco_detect_yolo11n_320_s8_v1_p4.espdl": "esp32p4",  # per-channel (and int8 biases over 20 bits)
    "optest_c_gemm_ishap_1_16_kshap_16_16_relu_s8.espdl": "c",  # metadata
}


@pytest.mark.parametrize("name", AMBIGUOUS)
def test_per_tensor_blocked_files_are_unknown(shared, name):
    model = read(shared("espdl-zoo", name))
    assert model.target is None
    assert [t.name for t in target_candidates(model)] == ["esp32p4", "esp32s3"]
    assert proven_target(model) is None
    d = inspect_model(model)
    assert d["inferred_target"] is None and d["target_candidates"] == ["esp32p4", "esp32s3"]
    line = next(x for x in format_inspect(d).splitlines() if x.startswith("target:"))
    expected = "unknown (no metadata target; the weights fit esp32p4 or esp32s3: pass --target)"
    assert line == "target:      " + expected
    assert infer_target(model).name == "esp32s3"  # the guess latency estimates still use


@pytest.mark.parametrize("name", sorted(PROVEN))
def test_proven_files_keep_their_target(shared, name):
    model = read(shared("espdl-zoo", name))
    assert proven_target(model).name == PROVEN[name] == infer_target(model).name
    assert inspect_model(model)["inferred_target"] == PROVEN[name]


def test_run_without_target_names_the_candidates(shared):
    path = shared("espdl-zoo", "tutorial_3gemm_p4.espdl")
    with pytest.raises(ConfigError, match="its weights fit esp32p4 or esp32s3"):
        IntegerRunner(path)
    assert IntegerRunner(path, "esp32p4").target.name == "esp32p4"


def test_cli_run_check_without_target_says_which_to_pass(shared, capsys):
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["run", str(shared("espdl-zoo", "tutorial_3gemm_p4.espdl")), "--check"])
    assert res.exit_code == 2, res.output
    assert "its weights fit esp32p4 or esp32s3" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(
        app, ["run", str(shared("espdl-zoo", "tutorial_3gemm_p4.espdl")), "--check", "--target", "esp32p4"]
    )
    assert res.exit_code == 0, res.output
