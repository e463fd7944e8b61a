"""Target records: names, aliases and the per-chip facts (esp_dl §4 table, esp_ppq §1.4, §2.1)."""

from __future__ import annotations

import dataclasses

import pytest

from espq.errors import ConfigError
from espq.targets import FAMILY_TARGETS, TARGETS, Rounding, Target, get_target

C_CHIPS = ("c", "esp32", "esp32s2", "esp32c2", "esp32c3", "esp32c5", "esp32c6")


def test_registry_names():
    assert set(TARGETS) == {"esp32p4", "esp32s31", "esp32s3", *C_CHIPS}
    assert FAMILY_TARGETS["p4"] == ("esp32p4", "esp32s31")
    assert FAMILY_TARGETS["s3"] == ("esp32s3",)
    assert set(FAMILY_TARGETS["c"]) == set(C_CHIPS)
    assert all(t.name == name for name, t in TARGETS.items())


@pytest.mark.parametrize(
    "alias, name",
    [
        ("ESP32-P4", "esp32p4"),
        ("p4", "esp32p4"),
        (" esp32_s3 ", "esp32s3"),
        ("S3", "esp32s3"),
        ("esp32-s31", "esp32s31"),
        ("C3", "esp32c3"),
        ("c", "c"),
        ("ESP32", "esp32"),
    ],
)
def test_aliases(alias, name):
    assert get_target(alias).name == name
    assert get_target(get_target(alias)) is get_target(alias)


def test_unknown_target_lists_names():
    with pytest.raises(ConfigError) as err:
        get_target("esp8266")
    for name in TARGETS:
        assert name in str(err.value)


def test_p4_family_facts():
    for name in ("esp32p4", "esp32s31"):
        t = get_target(name)
        assert t.family == "p4" and t.metadata_name == name
        assert t.rounding is Rounding.HALF_EVEN and t.lut_index_tie is Rounding.HALF_EVEN
        assert t.per_channel_weights and t.is_per_channel("Conv") and t.is_per_channel("Gemm")
        assert not t.is_per_channel("MatMul")
        assert dict(t.bias_bits) == {8: 32, 16: 40}
        assert dict(t.accumulator_bits) == {8: 32, 16: 64}
        assert t.accumulator_bits_for(8, leftover=True) == 40
        assert t.accumulator_saturates and not t.mul_rescale_in_float
        assert t.weight_layout == "blocked" and dict(t.weight_block) == {8: 16, 16: 8}
        assert dict(t.ppq_platforms) == {8: "ESPDL_INT8", 16: "ESPDL_INT16"}


def test_s3_facts():
    t = get_target("esp32s3")
    assert t.family == "s3" and t.metadata_name == "esp32s3"
    assert t.rounding is Rounding.HALF_UP and t.lut_index_tie is Rounding.HALF_UP
    assert not t.per_channel_weights and not t.is_per_channel("Conv")
    assert dict(t.bias_bits) == {8: 20, 16: 40}
    assert t.bias_range(8) == (-(2**19), 2**19 - 1)
    assert dict(t.bias_storage_bits) == {8: 32, 16: 64}
    assert dict(t.accumulator_bits) == {8: 20, 16: 40}
    assert t.accumulator_bits_for(8, leftover=True) == 40 and t.accumulator_bits_for(16, leftover=True) == 40
    assert t.accumulator_saturates and t.weight_layout == "blocked"
    assert dict(t.ppq_platforms) == {8: "ESPDL_S3_INT8", 16: "ESPDL_S3_INT16"}


@pytest.mark.parametrize("name", C_CHIPS)
def test_c_facts(name):
    t = get_target(name)
    assert t.family == "c" and t.metadata_name == "c"
    assert t.rounding is Rounding.HALF_UP and not t.per_channel_weights
    assert dict(t.bias_bits) == {8: 32, 16: 64}
    assert t.bias_range(16) == (-(2**63), 2**63 - 1)
    assert dict(t.accumulator_bits) == {8: 32, 16: 64}
    assert t.accumulator_bits_for(8, leftover=True) == 32
    assert not t.accumulator_saturates and t.mul_rescale_in_float
    assert t.weight_layout == "plain" and not t.weight_block
    assert dict(t.ppq_platforms) == {8: "ESPDL_C_INT8", 16: "ESPDL_C_INT16"}


def test_records_are_frozen_and_hashable():
    t = get_target("esp32p4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.rounding = Rounding.HALF_UP  # type: ignore[misc]
    with pytest.raises(TypeError):
        t.bias_bits[8] = 16  # type: ignore[index]
    assert {t: 1}[get_target("p4")] == 1
    assert isinstance(t, Target)


def test_metadata_names_match_optest_folders(shared):
    folders = {p.name.rsplit("_", 1)[0] for p in shared("espdl-optests").iterdir() if p.is_dir()}
    assert folders == {"c", "esp32p4", "esp32s3"}
    assert folders <= {t.metadata_name for t in TARGETS.values()}


def test_weight_layout_tags():
    p4, s3, c = get_target("esp32p4"), get_target("esp32s3"), get_target("esp32c6")
    assert p4.weight_layout_tag(8, 32, depthwise=False) == "(N/16)HWC16"
    assert (
        p4.weight_layout_tag(8, 10, depthwise=False) == "(N/16)HWC16_UNALIGNED"
    )  # fc [1,1,20,10], esp_ppq §4.6
    assert s3.weight_layout_tag(16, 24, depthwise=True) == "(N/8)HWC8"
    assert s3.weight_layout_tag(16, 20, depthwise=False, spatial_dims=1) == "(N/8)WC8_UNALIGNED"
    assert c.weight_layout_tag(8, 10, depthwise=False) == "NHWC"
    assert c.weight_layout_tag(8, 10, depthwise=True) == "HWCN"
    assert c.weight_layout_tag(16, 10, depthwise=True, spatial_dims=1) == "WCN"
    assert c.weight_layout_tag(16, 10, depthwise=False, spatial_dims=1) == "NWC"
