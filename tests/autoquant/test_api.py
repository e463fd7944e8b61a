"""espq.autoquant: the best configuration within budgets, numbers checked against espq.quantize."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from aqhelpers import batches, chain_model

import espq
from espq.autoquant.runner import output_error
from espq.autoquant.space import Config, default_space
from espq.errors import ConfigError

SPACE = [
    Config("kl"),
    Config("minmax"),
    Config("kl", equalization=(2, 10, 0.5), exponent_search=True),
    Config("kl", int16_layers=2),
]


def _nsr(config: Config, data, target="esp32s3") -> float:
    """The output error of ``config`` quantized directly with espq's public functions."""
    setting, recipe = config.setting()
    if config.int16_layers:
        qm = espq.auto_mixed_precision(
            chain_model(), data, target, max_int16_layers=config.int16_layers, setting=setting, progress=False
        )
    else:
        qm = espq.quantize(chain_model(), data, target, setting=setting, recipe=recipe, progress=False)
    x = np.concatenate(data)
    return output_error(qm.run(x), espq.run_float(espq.load(chain_model()), x))  # the original float


def test_best_is_lowest_error_and_matches_direct_quantize(tmp_path):
    data = batches()
    r = espq.autoquant(
        chain_model(), data, "esp32s3", space=SPACE, max_evaluations=4, run_dir=tmp_path / "run"
    )
    finals = [c["score"] for c in r.candidates]
    assert finals == sorted(finals) and len(finals) == 4
    # every finalist's score is the output NSR of the same settings run through espq.quantize on all batches
    # (in the search's order of the batches: seed 0's permutation)
    ordered = [data[i] for i in np.random.default_rng(0).permutation(len(data))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every AutoQuant run
    try:
        direct = {c.label(): _nsr(c, ordered) for c in SPACE}
    finally:
        torch.set_num_threads(threads)
    for rec in r.candidates:
        assert rec["score"] == pytest.approx(direct[rec["label"]], rel=1e-9)
    assert r.best["label"] == min(direct, key=direct.get)
    assert r.best["score"] < 0.5 * direct["kl"]
    # the chosen model was exported beside its config, and .model is that model
    folder = tmp_path / "run" / f"{r.best['index']:04d}"
    assert {"model.espdl", "model.info", "model.json", "config.json"} <= {p.name for p in folder.iterdir()}
    assert sorted(r.model.plan.int16_nodes()) == r.best["int16_layers"]
    cands = json.loads((tmp_path / "run" / "candidates.json").read_text())
    assert [c["hash"] for c in cands] == [c["hash"] for c in r.candidates]


def test_size_budget_excludes_int16_candidates(tmp_path):
    data = batches()
    plain = espq.autoquant(chain_model(), data, "esp32s3", space=SPACE[:1], run_dir=tmp_path / "a")
    budget = plain.best["param_bytes"] + 16  # int8 fits, any int16 layer does not
    r = espq.autoquant(
        chain_model(),
        data,
        "esp32s3",
        space=SPACE,
        max_evaluations=4,
        max_size_bytes=budget,
        run_dir=tmp_path / "b",
    )
    assert all(c["param_bytes"] <= budget and not c["int16_layers"] for c in r.candidates)
    assert r.best["score"] <= plain.best["score"]
    with pytest.raises(ConfigError, match="no candidate fits the budgets"):
        espq.autoquant(chain_model(), data, "esp32s3", space=SPACE, max_size_bytes=10, run_dir=tmp_path / "c")


def test_user_evaluate_and_direction(tmp_path):
    data = batches()
    seen = []

    def evaluate(qm):
        seen.append(qm)
        x = np.concatenate(data)
        err = output_error(qm.run(x), qm.run_float(x))
        return -err, {"err": err}

    r = espq.autoquant(
        chain_model(), data, "esp32s3", evaluate=evaluate, space=SPACE, max_evaluations=2, run_dir=tmp_path
    )
    assert len(seen) == 2  # only the finalists are evaluated
    assert r.score_direction == "maximize"
    assert r.best["score"] == pytest.approx(-r.best["err"]) and r.best["score"] >= r.candidates[-1]["score"]
    with pytest.raises(ConfigError, match="finite number"):
        espq.autoquant(
            chain_model(),
            data,
            "esp32s3",
            evaluate=lambda qm: float("nan"),
            space=SPACE[:1],
            run_dir=tmp_path,
        )


def test_space_keys_and_package_is_callable():
    space = default_space()
    assert len({c.key() for c in space}) == len(space) == 108
    # a recipe decides its steps: knobs given beside it do not make a different configuration
    assert Config("kl", (2, 10, 0.5), recipe="best").key() == Config("kl", recipe="best").key()
    assert Config("kl").label() == "kl" and Config("mse", (1, 10, 0.5), True, True, 2).label() == (
        "mse+eq(L1,10it,t0.5)+expsearch+biascorr+amp2"
    )
    import espq.autoquant.search as search

    assert callable(espq.autoquant) and search.rungs(32, 2, 3) == [2, 6, 18]
    with pytest.raises(ConfigError, match="unknown observer"):
        Config("max")


def test_latency_budget_returns_most_accurate_under_it(tmp_path):
    pytest.importorskip("espq.targets.latency")
    space = [Config("kl"), Config("minmax"), Config("kl", int16_layers=2), Config("kl", int16_layers=4)]
    free = espq.autoquant(
        chain_model(), batches(), "esp32s3", space=space, max_evaluations=4, run_dir=tmp_path / "a"
    )
    lat = {r["label"]: r["latency_ms"] for r in free.summary}
    assert free.best["label"] == "kl+amp4" and lat["kl+amp4"] > lat["kl+amp2"] > lat["kl"] > 0
    budget = (lat["kl+amp4"] + lat["kl+amp2"]) / 2
    r = espq.autoquant(
        chain_model(),
        batches(),
        "esp32s3",
        space=space,
        max_evaluations=4,
        max_latency_ms=budget,
        run_dir=tmp_path / "b",
    )
    under = [rec for rec in free.summary if rec["latency_ms"] <= budget]
    assert (
        r.best["latency_ms"] <= budget
        and r.best["label"] == min(under, key=lambda rec: rec["score"])["label"]
    )
    assert r.best["label"] != "kl+amp4" and "kl+amp4" not in {c["label"] for c in r.candidates}
    assert {f["label"] for f in free.front} >= {"kl+amp4", "kl+amp2"}  # the front trades error for latency
