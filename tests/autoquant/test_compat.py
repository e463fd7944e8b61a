"""ESP-PPQ 1.3.12's AutoQuant API: names, defaults, run directory, load_best_setting."""

from __future__ import annotations

import json

import onnx
import pytest
from aqhelpers import batches, chain_model

from espq.api import (
    AutoQuantSearchSetting,
    espdl_auto_quantize_onnx,
    load_best_setting,
    low_latency_candidate_filter,
)
from espq.api.autoquant import enumerate_samples, to_config
from espq.autoquant.space import Config
from espq.errors import ConfigError


def test_setting_defaults_match_esp_ppq_1_3_12():
    s = AutoQuantSearchSetting()
    assert (s.num_of_candidates, s.search_mode, s.score_direction, s.run_dir, s.resume) == (
        5,
        "exhaustive",
        "maximize",
        "outputs/auto_quant",
        False,
    )
    assert s.candidate_filter is low_latency_candidate_filter
    assert (s.top_strategy, s.early_stop_patience) == (10, 3)
    assert s.strategy_space["tqt"] == [True, False] and s.strategy_space["mixed_precision"] == [False]
    assert s.param_space["calib_algorithm"]["method"] == ["kl", "percentile", "mse"]
    assert s.param_space["weight_equalization"] == {
        "iterations": [10, 50, 100],
        "value_threshold": [0.1, 0.5, 2],
        "opt_level": [2],
    }
    with pytest.raises(AttributeError):
        s.tqt_lr = 1e-5  # a field ESP-PPQ's setting does not have


def test_default_space_maps_to_distinct_espq_configs():
    with pytest.warns(UserWarning, match="blockwise_reconstruction, tqt"):
        samples = list(enumerate_samples(AutoQuantSearchSetting()))
    configs = {to_config(s, p)[0].key() for s, p in samples}
    # 3 observers x (9 equalization settings + off) x bias correction on/off
    assert len(configs) == 60
    strategy = {
        "num_of_bits": True,
        "calib_algorithm": True,
        "weight_equalization": True,
        "mixed_precision": True,
    }
    params = {
        "num_of_bits": {"value": 8},
        "calib_algorithm": {"method": "mse"},
        "weight_equalization": {"iterations": 50, "value_threshold": 2, "opt_level": 2},
        "mixed_precision": {"topk": 3},
    }
    assert to_config(strategy, params) == (Config("mse", (2, 50, 2.0), False, False, 3), 8)
    assert not low_latency_candidate_filter({"strategy": strategy})


def test_fast_search_run_dir_and_load_best_setting(tmp_path):
    onnx_path = tmp_path / "chain.onnx"
    onnx.save(chain_model(), onnx_path)
    before = onnx_path.read_bytes()
    setting = AutoQuantSearchSetting(search_mode="fast", run_dir=str(tmp_path / "run"), num_of_candidates=3)
    setting.param_space["weight_equalization"]["iterations"] = [10]
    setting.top_strategy = 4
    data = batches()
    with pytest.warns(UserWarning, match="does not implement"):
        records = espdl_auto_quantize_onnx(
            str(onnx_path),
            str(tmp_path / "best.espdl"),
            data,
            6,
            [3, 8, 8],
            target="esp32s3",
            setting=setting,
        )
    assert onnx_path.read_bytes() == before
    assert len(records) == 3 and (tmp_path / "best.espdl").is_file() and (tmp_path / "best.json").is_file()
    scores = [r["score"] for r in records]
    assert scores == sorted(scores)  # the default score (graphwise error) is minimised
    for r in records:
        assert {"score", "hash", "index", "folder", "files", "strategy", "params", "topn_mean_error"} <= set(
            r
        )
        assert r["topn_used"] == 3.0 and r["score"] == r["topn_mean_error"]
    on_disk = json.loads((tmp_path / "run" / "candidates.json").read_text())
    assert [r["hash"] for r in on_disk] == [r["hash"] for r in records]

    pinned = load_best_setting(str(tmp_path / "run" / "candidates.json"), score_direction="minimize")
    assert pinned.search_mode == "exhaustive" and pinned.run_dir == str(tmp_path / "run" / "best")
    assert all(len(v) == 1 for v in pinned.strategy_space.values())
    again = espdl_auto_quantize_onnx(
        str(onnx_path), str(tmp_path / "again.espdl"), data, 6, [3, 8, 8], target="esp32s3", setting=pinned
    )
    assert len(again) == 1 and again[0]["hash"] == records[0]["hash"]
    assert again[0]["score"] == pytest.approx(records[0]["score"], rel=1e-9)
    with pytest.raises(ConfigError, match="out of range"):
        load_best_setting(str(tmp_path / "run" / "candidates.json"), candidate_index=3)
    with pytest.raises(ConfigError, match="unknown keyword"):
        espdl_auto_quantize_onnx(str(onnx_path), str(tmp_path / "x.espdl"), data, 6, [3, 8, 8], foo=1)
