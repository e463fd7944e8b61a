"""Real-model corpus (issue 13): check -> quantize -> export with test values -> run --check.

Every model of :data:`realmodel_sources.SOURCES` at every target x bits either passes (the integer
runner reproduces the embedded fake-quant test outputs: exact at int8, +-1 at int16) or fails with the
one :class:`EspqError` subclass :data:`EXPECTED` names for it (never another exception). Models come
from PyPI wheels cached by :mod:`espq.testing.wheels` and from ``../shared/models``; a model that
cannot be had skips.

Marked ``slow`` (pyproject's addopts select no markers, so ``.ci/run``'s plain ``python -m pytest``
runs it; ``-m "not slow"`` leaves it out). CI time: each model runs the configs its ``Source.ci``
lists (tiny models all six, slow ones one, the slowest none); ``ESPQ_REALMODELS=full`` runs every
model at every config.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from realmodel_sources import SOURCES, Source, Unavailable

import espq
from espq.errors import EspqError
from espq.sim.integer import check_test_values

pytestmark = pytest.mark.slow

TARGETS = ("esp32p4", "esp32s3", "c")
BITS = (8, 16)
CONFIGS = [(t, b) for b in BITS for t in TARGETS]
FULL = os.environ.get("ESPQ_REALMODELS", "") == "full"
CALIB_BATCHES = 2

#: (model, target, bits) -> what that config does today when it does not pass: the EspqError subclass
#: name it raises, or MISMATCH (the export's own run --check fails: a fidelity bug being fixed).
#: ``(model, "*", 0)`` covers every config of the model. Absent: it passes.
MISMATCH = "run --check mismatch"
EXPECTED: dict[tuple[str, str, int], str] = {
    # Clip's max is computed at run time (ReduceMax(x) - 80 dB); ESP-DL reads Clip bounds as parameters
    ("oww_melspectrogram", "*", 0): "UnsupportedOpError",
    # the int16 model's float Softmax output (2 values) differs from fake-quant by 6.5e-5 / 1.1e-4,
    # beyond check_test_values' 2e-5 for float outputs (esp32p4 / esp32s3; c passes)
    ("ppocr_cls", "esp32p4", 16): MISMATCH,
    ("ppocr_cls", "esp32s3", 16): MISMATCH,
}


def _cases() -> list[tuple[str, str, int]]:
    cases = []
    for name, source in SOURCES.items():
        configs = CONFIGS if FULL else [CONFIGS[i] for i in source.ci]
        cases += [(name, t, b) for t, b in configs]
    return cases


_graphs: dict[str, object] = {}


def _graph(source: Source):
    """The model loaded once per session (loading Keras/torch models dominates small cases)."""
    if source.name not in _graphs:
        try:
            model, input_shape = source.load()
        except Unavailable as exc:
            _graphs[source.name] = exc
        else:
            try:
                _graphs[source.name] = espq.load(model, input_shape=input_shape)
            except EspqError as exc:
                _graphs[source.name] = exc
    return _graphs[source.name]


def run_chain(source: Source, graph, target: str, bits: int, path) -> list:
    """check -> quantize (2 calibration samples) -> export with test values -> run --check; returns the
    check's tensors (raises the first EspqError on the way)."""
    espq.check_model(graph, target, bits)
    rng = np.random.default_rng(0)
    calib = [source.draw(graph, rng) for _ in range(CALIB_BATCHES)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the quality gate's findings on random inputs
        qm = espq.quantize(graph, calib, target=target, bits=bits, calib_steps=CALIB_BATCHES, progress=False)
    qm.export(path, export_test_values=True, test_inputs=source.draw(graph, np.random.default_rng(1)))
    return check_test_values(path).tensors


@pytest.mark.parametrize("name, target, bits", _cases())
def test_real_model_chain(name, target, bits, tmp_path):
    source = SOURCES[name]
    graph = _graph(source)
    if isinstance(graph, Unavailable):
        pytest.skip(str(graph))
    expected = EXPECTED.get((name, target, bits), EXPECTED.get((name, "*", 0)))
    if isinstance(graph, EspqError):
        assert type(graph).__name__ == expected, f"espq.load: {type(graph).__name__}: {graph}"
        assert "\n" not in str(graph).strip()
        return
    try:
        tensors = run_chain(source, graph, target, bits, tmp_path / f"{name}.espdl")
    except EspqError as exc:
        assert type(exc).__name__ == expected, f"{type(exc).__name__}: {exc}"
        assert "node '" in str(exc), f"the error names no node: {exc}"
        return
    bad = [(t.name, t.max_abs_diff, t.mismatches, t.numel, t.reason) for t in tensors if not t.ok]
    assert tensors
    if expected == MISMATCH:
        assert bad, "run --check passes now: remove the MISMATCH entry from EXPECTED"
        return
    assert expected is None, f"expected {expected}, but the chain passed"
    assert not bad, f"run --check failed: {bad}"
