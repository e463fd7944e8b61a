"""``Model::test()`` on the host: run the embedded test inputs and compare the embedded outputs.

Comparison rule (esp_dl_facts.md §2.6, ``TensorBase::equal``): dtype, shape and exponent must match;
then |Δ| ≤ 2e-5 for int8 (exact), ≤ 1 + 1e-5 for int16/uint16 (±1), ≤ 2e-5 for float (NaN == NaN).

Weak test values: when every embedded expected output is all zero, a match says little (a file whose
input exponent was corrupted to saturate everything to 0 matches too). The report then says "PASS (weak
test values ...)" and :attr:`CheckReport.weak` is True, but ``ok`` stays what ESP-DL's ``Model::test()``
would say: Espressif's own op tests include such files (ReduceProd over 5x10x10x5 values, a left-shift
Requantize: 6 of the 1,387 shared files), correct ones that a failure would misreport.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from espq.errors import ConfigError
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
    #: every embedded expected output is all zero (see the module docstring)
    weak: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.tensors) and all(t.ok for t in self.tensors)

    @property
    def weak_message(self) -> str:
        """Why a passing check means little ("" when the test values are meaningful)."""
        if not self.weak:
            return ""
        return (
            "weak test values: every expected output is all zero, so this check cannot tell a working "
            "model from one that outputs only zeros; check with real inputs (espq run --input)"
        )

    def format(self) -> str:
        """A text table: tensor, max |Δ|, mismatches, PASS/FAIL (+ reason)."""
        rows = [("tensor", "max|d|", "mismatches", "result")]
        for t in self.tensors:
            res = "PASS" if t.ok else "FAIL" + (f" ({t.reason})" if t.reason else "")
            rows.append((t.name, f"{t.max_abs_diff:g}", f"{t.mismatches}/{t.numel}", res))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{self.source} on {self.target}"]
        lines += ["  " + "  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
        verdict = "PASS" if self.ok else "FAIL"
        if self.ok and self.weak:
            verdict += f" ({self.weak_message})"
        lines.append(f"  {verdict}: {sum(t.ok for t in self.tensors)}/{len(self.tensors)}")
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
    report = CheckReport(
        source, runner.target.name, weak=not any(t.values().any() for t in g.test_outputs.values())
    )
    for name, ref in g.test_outputs.items():
        report.tensors.append(compare_tensor(name, got[name], ref))
    return report
