"""``espq run FILE [--input ...] [--output out.npz] [--target T] [--check]``: the integer runner on the
command line (exit codes: 0 ran / test values match, 1 mismatch, 2 usage or file error)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from espq.errors import ConfigError, EspqError
from espq.espdl.model import EspdlModel
from espq.sim.integer.check import check_test_values
from espq.sim.integer.runner import IntegerRunner
from espq.utils import save_npz


def _load_inputs(specs: list[str], runner: IntegerRunner) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for i, spec in enumerate(specs):
        name, sep, file = spec.partition("=")
        if not sep:
            name, file = "", spec
        if not name:
            if i >= len(runner.input_names):
                raise ConfigError(f"{len(specs)} inputs given but the model has {len(runner.input_names)}")
            name = runner.input_names[i]
        try:
            feeds[name] = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read input '{name}' from '{file}': {exc}") from None
    return feeds


def run_cli(
    path: str,
    inputs: list[str],
    output: str | None,
    target: str | None,
    check: bool,
    model: EspdlModel | None = None,
) -> int:
    """``espq run``: 0 = ran / all test values match, 1 = mismatch, 2 = usage or file error.

    ``inputs``: ``x.npy`` (graph inputs in order) or ``name=x.npy``; float values in the ONNX layout.
    ``output``: ``.npz`` path for the dequantised outputs. ``check``: compare the embedded test values
    (used when no inputs are given, too). ``model``: the already-read model of ``path`` (an
    encrypted file or one model of a package).
    """
    try:
        if not Path(path).is_file():
            raise ConfigError(f"no such file: '{path}'")
        if check or not inputs:
            report = check_test_values(path if model is None else model, target)
            print(report.format())
            if report.ok and report.weak:
                print(f"warning: {report.weak_message}", file=sys.stderr)
            if not inputs:
                return 0 if report.ok else 1
            if not report.ok:
                return 1
        runner = IntegerRunner(path if model is None else model, target)
        result = runner.run(_load_inputs(inputs, runner))
        for name, arr in result.items():
            print(f"{name}: shape {list(arr.shape)} dtype {arr.dtype} min {arr.min():g} max {arr.max():g}")
        if output:
            written, renamed = save_npz(output, result)  # names like 'file' / '../x' stay data
            for name, member in renamed.items():
                print(f"output {name!r} stored as member {member!r}")
            print(f"wrote {written}" + ("" if str(written) == output else " (.npz appended)"))
        return 0
    except EspqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
