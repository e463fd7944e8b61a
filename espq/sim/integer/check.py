"""``Model::test()`` on the host: run the embedded test inputs and compare the embedded outputs, plus the
functions behind ``espq run FILE [--input ...] [--output out.npz] [--target T] [--check]``.

Comparison rule (esp_dl_facts.md §2.6, ``TensorBase::equal``): dtype, shape and exponent must match;
then |Δ| ≤ 2e-5 for int8 (exact), ≤ 1 + 1e-5 for int16/uint16 (±1), ≤ 2e-5 for float (NaN == NaN).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from espq.errors import ConfigError, EspqError
from espq.espdl import read
from espq.espdl.model import EspdlModel, EspdlTensor
from espq.sim.integer.base import QTensor
from espq.sim.integer.runner import IntegerRunner, resolve_target
from espq.targets import Target


class NoTestValuesError(ConfigError):
    """The `.espdl` file carries no embedded test inputs/outputs."""


@dataclass
class TensorCheck:
    """Result of comparing one embedded test output."""

    name: str
    ok: bool
    max_abs_diff: float
    mismatches: int
    numel: int
    reason: str = ""


@dataclass
class CheckReport:
    """Per-tensor results of :func:`check_test_values`."""

    source: str
    target: str
    tensors: list[TensorCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.tensors) and all(t.ok for t in self.tensors)

    def format(self) -> str:
        """A text table: tensor, max |Δ|, mismatches, PASS/FAIL (+ reason)."""
        rows = [("tensor", "max|d|", "mismatches", "result")]
        for t in self.tensors:
            res = "PASS" if t.ok else "FAIL" + (f" ({t.reason})" if t.reason else "")
            rows.append((t.name, f"{t.max_abs_diff:g}", f"{t.mismatches}/{t.numel}", res))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{self.source} on {self.target}"]
        lines += ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        lines.append(
            f"  {'PASS' if self.ok else 'FAIL'}: {sum(t.ok for t in self.tensors)}/{len(self.tensors)}"
        )
        return "\n".join(lines)


def _stored(t: EspdlTensor) -> np.ndarray:
    return t.values().reshape([int(d) for d in t.dims])


def compare_tensor(name: str, got: QTensor, ref: EspdlTensor) -> TensorCheck:
    """``TensorBase::equal`` of a computed tensor against an embedded test output."""
    want = _stored(ref)
    n = int(want.size)
    if got.data.dtype != want.dtype:
        return TensorCheck(name, False, float("inf"), n, n, f"dtype {got.data.dtype} != {want.dtype}")
    if tuple(got.data.shape) != tuple(want.shape):
        return TensorCheck(name, False, float("inf"), n, n, f"shape {list(got.shape)} != {list(want.shape)}")
    ref_exp = ref.exponents[0] if ref.exponents else 0
    is_int = np.issubdtype(want.dtype, np.integer)
    if is_int and got.exponent != ref_exp:
        return TensorCheck(name, False, float("inf"), n, n, f"exponent {got.exponent} != {ref_exp}")
    if want.dtype == np.bool_:
        bad = got.data != want
        return TensorCheck(name, not bad.any(), float(bad.any()), int(bad.sum()), n)
    a = got.data.astype(np.float64)
    b = want.astype(np.float64)
    diff = np.abs(a - b)
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    eps = 1 + 1e-5 if want.dtype in (np.int16, np.uint16) else 2e-5
    bad = diff > eps
    return TensorCheck(name, not bad.any(), float(diff.max()) if n else 0.0, int(bad.sum()), n)


def check_test_values(
    path_or_model: EspdlModel | str | os.PathLike, target: str | Target | None = None
) -> CheckReport:
    """Run the file's embedded test inputs and compare every embedded test output (ESP-DL's rule).

    Raises :class:`NoTestValuesError` (a ConfigError) when the file has no test values.
    """
    model = path_or_model if isinstance(path_or_model, EspdlModel) else read(path_or_model)
    source = f"model '{model.graph.name}'" if isinstance(path_or_model, EspdlModel) else str(path_or_model)
    g = model.graph
    if not g.test_inputs or not g.test_outputs:
        raise NoTestValuesError(
            f"{source} has no test values; export with export_test_values=True to embed test inputs/outputs"
        )
    runner = IntegerRunner(model, resolve_target(model, target, source))
    feeds = {}
    for name in runner.input_names:
        if name not in g.test_inputs:
            raise NoTestValuesError(f"{source}: no test input for graph input '{name}'")
        feeds[name] = _stored(g.test_inputs[name])
    got = runner.run_q(feeds, raw=True, outputs=list(g.test_outputs))
    report = CheckReport(source, runner.target.name)
    for name, ref in g.test_outputs.items():
        report.tensors.append(compare_tensor(name, got[name], ref))
    return report


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
            if not inputs:
                return 0 if report.ok else 1
            if not report.ok:
                return 1
        runner = IntegerRunner(path if model is None else model, target)
        result = runner.run(_load_inputs(inputs, runner))
        for name, arr in result.items():
            print(f"{name}: shape {list(arr.shape)} dtype {arr.dtype} min {arr.min():g} max {arr.max():g}")
        if output:
            from espq.utils import save_npz

            written, renamed = save_npz(output, result)  # names like 'file' / '../x' stay data
            for name, member in renamed.items():
                print(f"output {name!r} stored as member {member!r}")
            print(f"wrote {written}" + ("" if str(written) == output else " (.npz appended)"))
        return 0
    except EspqError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
