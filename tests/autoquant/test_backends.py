"""Serial, process-pool and Ray backends give the same search (same seed -> same top-K, same numbers)."""

from __future__ import annotations

import pytest
from aqhelpers import batches, chain_model

import espq
from espq.autoquant.space import Config
from espq.errors import ConfigError

SPACE = [Config("kl"), Config("minmax"), Config("mse", (2, 10, 0.5)), Config("kl", int16_layers=2)]


def _search(tmp_path, name, **kw):
    return espq.autoquant(
        chain_model(), batches(n=6), "esp32s3", space=SPACE, max_evaluations=2, run_dir=tmp_path / name, **kw
    )


def _numbers(result):
    return [(r["stage"], r["batches"], r["hash"], r["nsr"], r["param_bytes"]) for r in result.summary]


def test_process_pool_matches_serial(tmp_path):
    serial = _search(tmp_path, "serial", backend="serial")
    pool = _search(tmp_path, "pool", backend="process", workers=2)
    assert _numbers(pool) == _numbers(serial)
    assert [c["hash"] for c in pool.candidates] == [c["hash"] for c in serial.candidates]
    assert [c["score"] for c in pool.candidates] == [c["score"] for c in serial.candidates]
    other_seed = _search(tmp_path, "seed1", backend="serial", seed=1)
    assert _numbers(other_seed) != _numbers(serial)  # the seed picks the proxy batches


def test_ray_matches_serial(tmp_path):
    ray = pytest.importorskip("ray")
    serial = _search(tmp_path, "serial", backend="serial")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        distributed = _search(tmp_path, "ray", backend="ray", workers=2)
    finally:
        ray.shutdown()
    assert _numbers(distributed) == _numbers(serial)
    assert [c["hash"] for c in distributed.candidates] == [c["hash"] for c in serial.candidates]


def test_bad_backend_and_workers(tmp_path):
    with pytest.raises(ConfigError, match="unknown backend"):
        _search(tmp_path, "x", backend="dask")
    with pytest.raises(ConfigError, match="workers must be a positive integer"):
        _search(tmp_path, "y", workers=0)
