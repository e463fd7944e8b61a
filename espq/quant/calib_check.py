"""Degenerate calibration: refuse data that cannot calibrate the model, warn about dead activations.

Run once on the calibration statistics and the first resolved exponents (:func:`check_calibration`).
A value ``x`` is stored as ``round(x / 2**e)``; when ``max |x| <= 2**e / 2`` every value becomes code 0
and the tensor carries no signal ("collapsed"). The observers never pick a step below ESP-PPQ's minimum
scale (``MIN_SCALE``, 2^-27..2^-26), so data scaled by ~1e-9 or less collapses; ESP-DL files hold
exponents in ``[-MAX_ABS_EXPONENT, MAX_ABS_EXPONENT]`` only, so data scaled by ~1e18 or more cannot be
stored at all.

Errors (:class:`~espq.errors.CalibrationError`): a graph input that is all zero, collapsed or out of the
exponent range, or (single-input models) constant; any activation out of the exponent range; a graph
output whose non-zero float values all quantize to 0. These come from wrong data (zeros, a wrong
normalisation or unit), never from a usable model.

Warnings (:class:`CalibrationWarning`): a graph input that uses under 1/16 of its codes (scaled near the
smallest step: the observers cover ``max |x|`` with most codes unless the step is floored); activations
that are exactly zero over all calibration data (a ReLU that saw only negatives, ``Sub(x, x)``) or
collapsed inside the graph; a constant input of a multi-input model (a mask or flag input may
legitimately be constant): the model may be fine on real data, but those tensors were not calibrated.
"""

from __future__ import annotations

import warnings

import numpy as np

from espq.errors import CalibrationError, ModelLoadError
from espq.espdl.decode import MAX_ABS_EXPONENT
from espq.ir import Graph
from espq.ir.spec import QuantPlan
from espq.quant.observers import TensorStats

#: an input whose largest value is under 1/FEW_CODES of the code range was floored at the smallest step
FEW_CODES = 16
#: tensors named in one warning line (the rest are counted)
LISTED = 5
CAUSE = (
    "the calibration data is probably wrong (all zeros, a wrong normalisation or unit, the wrong file): "
    "give real inputs scaled as the model expects"
)


class CalibrationWarning(UserWarning):
    """Activations that calibration could not range (all zero or collapsed on the given data)."""


def _listed(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def _exponent(plan: QuantPlan, name: str) -> tuple[int, int] | None:
    """(exponent, bits) of a per-tensor integer activation, None for float/per-channel/unplanned ones."""
    spec = plan.tensors.get(name)
    if spec is None or spec.bits > 16 or not isinstance(spec.exponent, int):
        return None
    return spec.exponent, spec.bits


def collapsed(stats: TensorStats, exponent: int) -> bool:
    """True when every observed non-zero value of the tensor rounds to code 0 at ``exponent``."""
    return 0.0 < stats.absmax <= 0.5 * 2.0**exponent


def check_finite_parameters(graph: Graph) -> None:
    """Raise :class:`~espq.errors.ModelLoadError` naming the first float initializer that holds NaN or
    Inf (no exponent can represent it; calibration would fail inside the observers)."""
    for name, value in graph.initializers.items():
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or np.isfinite(arr).all():
            continue
        users = [n.name for n in graph.nodes if name in n.inputs]
        where = f" (input of node '{users[0]}')" if users else ""
        raise ModelLoadError(
            f"initializer '{name}'{where} holds {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} Inf value(s); the model's weights are broken (re-export or fix them)"
        )


def check_calibration(graph: Graph, plan: QuantPlan, stats: dict[str, TensorStats]) -> None:
    """Raise :class:`CalibrationError` for degenerate calibration data, warn about dead activations.

    ``plan``: the plan with the exponents resolved from ``stats`` (before any search step).
    """
    inputs = [t for t in graph.inputs if t in stats and stats[t].count]
    for name in inputs:
        _check_input(name, stats[name], _exponent(plan, name), single=len(graph.inputs) == 1)
    zero, tiny, constant = [], [], []
    for name in inputs:
        s = stats[name]
        if len(graph.inputs) > 1 and s.min == s.max != 0:
            constant.append(name)
    for name, s in stats.items():
        if name in graph.inputs or name in graph.initializers or not s.count:
            continue
        found = _exponent(plan, name)
        if found is None:
            continue
        e, bits = found
        if abs(e) > MAX_ABS_EXPONENT:
            raise CalibrationError(
                f"activation '{name}' needs exponent {e} at int{bits} (|values| up to {s.absmax:.3g}), "
                f"outside ESP-DL's [-{MAX_ABS_EXPONENT}, {MAX_ABS_EXPONENT}]; {CAUSE}"
            )
        if s.absmax == 0.0:
            zero.append(name)
        elif collapsed(s, e):
            if name in graph.outputs:
                raise CalibrationError(
                    f"graph output '{name}': its largest |value| {s.absmax:.3g} is below half the smallest "
                    f"int{bits} step 2^{e}, so every output code is 0 (a model that outputs nothing); {CAUSE}"
                )
            tiny.append(name)
    if constant:
        warnings.warn(
            f"calibration input(s) {_listed(constant)} are constant over all calibration data; their "
            "exponent fits only that value (fine for a mask/flag input, wrong for real signals)",
            CalibrationWarning,
            stacklevel=3,
        )
    if zero:
        warnings.warn(
            f"{len(zero)} activation(s) are exactly zero on all calibration data ({_listed(zero)}): they "
            "were not calibrated (e.g. a ReLU that saw only negatives); use more varied calibration data",
            CalibrationWarning,
            stacklevel=3,
        )
    if tiny:
        warnings.warn(
            f"{len(tiny)} activation(s) are below the smallest step of their exponent on all calibration "
            f"data ({_listed(tiny)}): every code is 0 there; check the model's weights and the data's scale",
            CalibrationWarning,
            stacklevel=3,
        )


def _check_input(name: str, s: TensorStats, found: tuple[int, int] | None, single: bool) -> None:
    if s.absmax == 0.0:
        raise CalibrationError(
            f"calibration input '{name}' is all zero over {s.count} values, so no exponent can be "
            f"calibrated; {CAUSE}"
        )
    if single and s.min == s.max:
        raise CalibrationError(
            f"calibration input '{name}' holds the single value {s.min:.6g} over {s.count} values (constant "
            f"data); {CAUSE}"
        )
    if found is None:
        return
    e, bits = found
    if abs(e) > MAX_ABS_EXPONENT:
        raise CalibrationError(
            f"calibration input '{name}' needs exponent {e} at int{bits} (|values| up to {s.absmax:.3g}), "
            f"outside ESP-DL's [-{MAX_ABS_EXPONENT}, {MAX_ABS_EXPONENT}]; {CAUSE}"
        )
    if collapsed(s, e):
        raise CalibrationError(
            f"calibration input '{name}': its largest |value| {s.absmax:.3g} is below half the smallest "
            f"int{bits} step 2^{e}, so every input code is 0; {CAUSE}"
        )
    top = (1 << (bits - 1)) - 1
    codes = round(s.absmax / 2.0**e)
    if codes * FEW_CODES < top:
        warnings.warn(
            f"calibration input '{name}' uses only codes -{codes}..{codes} of int{bits}'s -{top}..{top}: its "
            f"largest |value| {s.absmax:.3g} is near the smallest step 2^{e}; check the data's scale "
            "(normalisation)",
            CalibrationWarning,
            stacklevel=4,
        )
