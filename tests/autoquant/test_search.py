"""Staged search: proxy rungs, successive halving, no run twice, resume."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from aqhelpers import batches, chain_model

import espq
import espq.autoquant.runner as runner
from espq.autoquant.search import front_levels, rungs, top_k
from espq.autoquant.space import Config
from espq.errors import ConfigError

SPACE = [
    Config(obs, eq, es)
    for obs in ("kl", "minmax", "mse")
    for eq in (None, (2, 10, 0.5))
    for es in (False, True)
]  # 12 configurations


def test_rungs_halve_and_only_finalists_are_evaluated(tmp_path, monkeypatch):
    calls = Counter()
    real = runner.run_float

    def counting(graph, feeds, *a, **k):
        calls[len(next(iter(feeds.values())))] += 1
        return real(graph, feeds, *a, **k)

    monkeypatch.setattr(runner, "run_float", counting)
    evaluated = []
    r = espq.autoquant(
        chain_model(),
        batches(n=18, batch=2),
        "esp32s3",
        evaluate=lambda qm: (evaluated.append(qm), 1.0)[1],
        max_evaluations=2,
        space=SPACE,
        proxy_batches=2,
        eta=3,
        run_dir=tmp_path,
    )
    assert rungs(18, 2, 3) == [2, 6]
    stages = Counter((rec["stage"], rec["batches"]) for rec in r.summary)
    assert stages == {("proxy", 2): 12, ("proxy", 6): 4, ("final", 18): 2}
    assert r.runs == 18 and len(evaluated) == 2
    # float outputs computed once per measured set (proxy: 2 batches of 2 = 4 images; all: 36), not per run
    assert calls == {4: 1, 36: 1}
    # survivors of rung 6 are the best 4 of rung 2 (non-dominated first: all have the same size here)
    rung2 = sorted((rec["nsr"], rec["index"], rec["hash"]) for rec in r.summary if rec["batches"] == 2)
    assert {h for *_, h in rung2[:4]} == {rec["hash"] for rec in r.summary if rec["batches"] == 6}


def test_identical_configurations_run_once(tmp_path):
    space = [
        Config("kl"),
        Config("kl"),
        Config("kl", recipe="best"),
        Config("kl", (2, 10, 0.5), True, recipe="best"),
    ]
    r = espq.autoquant(chain_model(), batches(), "esp32s3", space=space, max_evaluations=4, run_dir=tmp_path)
    assert r.runs == 2 and len(r.candidates) == 2
    assert len({rec["hash"] for rec in r.summary}) == 2


def test_resume_reruns_nothing_done_and_finishes_an_interrupted_search(tmp_path):
    kw = dict(space=SPACE, max_evaluations=2, proxy_batches=2, run_dir=tmp_path)
    first = espq.autoquant(chain_model(), batches(n=6), "esp32s3", **kw)
    assert first.runs == 14  # 12 proxy + 2 final
    again = espq.autoquant(chain_model(), batches(n=6), "esp32s3", resume=True, **kw)
    assert again.runs == 0 and again.candidates == first.candidates
    assert again.model.plan.to_json() == first.model.plan.to_json()  # rebuilt by one run on access
    # an interrupted search: the last 5 records (3 proxy runs, both finals) never reached summary.json
    summary = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps(summary[:-5]))
    resumed = espq.autoquant(chain_model(), batches(n=6), "esp32s3", resume=True, **kw)
    assert resumed.runs == 5
    assert [c["hash"] for c in resumed.candidates] == [c["hash"] for c in first.candidates]
    assert [c["score"] for c in resumed.candidates] == [c["score"] for c in first.candidates]
    with pytest.raises(ConfigError, match="resume=True needs"):
        espq.autoquant(
            chain_model(), batches(n=6), "esp32s3", resume=True, space=SPACE, run_dir=tmp_path / "new"
        )


def test_front_levels_and_balanced_top_k():
    # (error, latency, size): b dominates c; a and b trade error against size; d duplicates a
    costs = [(0.1, 0, 200.0), (0.2, 0, 100.0), (0.3, 0, 150.0), (0.1, 0, 200.0)]
    assert front_levels(costs) == [0, 0, 1, 1]
    recs = [
        {"score": s, "index": i, "strategy": {"mixed_precision": mp}}
        for i, (s, mp) in enumerate([(0.9, True), (0.8, True), (0.7, True), (0.5, False), (0.4, False)])
    ]
    no_amp = lambda r: not r["strategy"]["mixed_precision"]  # noqa: E731
    assert [r["index"] for r in top_k(recs, 4, "maximize", no_amp)] == [0, 1, 3, 4]
    assert [r["index"] for r in top_k(recs, 3, "maximize")] == [0, 1, 2]
