"""Quantization recipes: which accuracy steps ``espq.quantize`` runs around calibration.

* ``"espdl"``: ESP-PPQ 1.3.12's ``espdl_setting`` defaults (esp_ppq_facts.md §1.6): no equalization, no
  exponent search, no bias correction (espq's parameter rounding is half-to-even, see ``rules``).
* ``"best"``: layerwise equalization at level 2 (through Add/Sub, 10 iterations; §6) on the float graph,
  exponent search (:mod:`espq.quant.exponent_search`, then the output-aware search of
  :mod:`espq.quant.output_search`) and empirical bias correction
  (:mod:`espq.quant.bias_correction`). No training. Because a step can hurt a given model (equalization
  moves weights that already sit on an int8 grid off it, as in the zoo MobileNetV2), "best" also builds
  the model without equalization and the plain calibration, and keeps whichever has the lowest output
  noise-to-signal ratio against the float model on the calibration batches (two calibration passes); the
  plain calibration wins unless another variant is clearly (``SELECT_MARGIN``) better.

A :class:`~espq.quant.setting.QuantSetting` field set to ``True``/``False`` overrides the recipe for that
step; ``equalization_setting`` overrides the recipe's equalization settings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from espq.errors import ConfigError
from espq.ir import Graph
from espq.quant.bias_correction import MAX_ELEMENTS, stack_batches
from espq.quant.equalization import EqualizationSetting, equalize

if TYPE_CHECKING:
    from espq.quant.setting import QuantSetting


SELECT_MARGIN = 0.1  # "best" keeps its extra steps only when they cut the output error by >= 10 %


@dataclass(frozen=True)
class Recipe:
    """The accuracy steps of a recipe."""

    name: str
    equalization: bool
    exponent_search: bool
    bias_correction: bool
    equalization_opt_level: int = 1
    equalization_iterations: int = 10
    verify: bool = False


RECIPES: dict[str, Recipe] = {
    "espdl": Recipe("espdl", equalization=False, exponent_search=False, bias_correction=False),
    "best": Recipe(
        "best",
        equalization=True,
        exponent_search=True,
        bias_correction=True,
        equalization_opt_level=2,
        verify=True,
    ),
}


@dataclass
class Steps:
    """What one ``quantize`` call does: the recipe resolved against the setting's overrides."""

    recipe: str
    equalization: EqualizationSetting | None
    exponent_search: bool
    bias_correction: bool
    verify: bool = False


def resolve(setting: QuantSetting, recipe: str | None = None) -> Steps:
    """The steps for ``setting`` with ``recipe`` (``None`` = ``setting.recipe``)."""
    name = setting.recipe if recipe is None else recipe
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    r = RECIPES[name]

    def pick(value: bool | None, default: bool) -> bool:
        return default if value is None else bool(value)

    eq = None
    if pick(setting.equalization, r.equalization):
        eq = setting.equalization_setting or EqualizationSetting(
            opt_level=r.equalization_opt_level, iterations=r.equalization_iterations
        )
        eq.validate()
    return Steps(
        recipe=name,
        equalization=eq,
        exponent_search=pick(setting.exponent_search, r.exponent_search),
        bias_correction=pick(setting.bias_correction, r.bias_correction),
        verify=r.verify,
    )


def prepare_graph(graph: Graph, steps: Steps) -> Graph:
    """Float-graph steps before planning (equalization); in place, returns ``graph``."""
    if steps.equalization is not None:
        equalize(graph, steps.equalization)
    return graph


def settings_from_compat(compat: Any, setting: QuantSetting) -> QuantSetting:
    """Fill ``setting``'s accuracy fields from an ESP-PPQ-style settings object (``espq.api.settings``).

    ``equalization=True`` forces equalization with ``equalization_setting`` (ESP-PPQ's meaning);
    ``bias_correct=True`` forces bias correction; ``False`` (ESP-PPQ's default) leaves both to the recipe.
    """
    eq = compat.equalization_setting
    if getattr(eq, "including_act", False):
        raise ConfigError(
            "equalization_setting.including_act is not supported by espq (activation ranges are not "
            "part of its key values); set it to False"
        )
    if compat.equalization:
        setting.equalization = True
        setting.equalization_setting = EqualizationSetting(
            opt_level=eq.opt_level,
            iterations=eq.iterations,
            value_threshold=eq.value_threshold,
            including_bias=eq.including_bias,
            bias_multiplier=eq.bias_multiplier,
            interested_layers=list(eq.interested_layers or []),
        )
    if compat.bias_correct:
        setting.bias_correction = True
    setting.validate()
    return setting


def variants(steps: Steps) -> list[Steps]:
    """The step sets one ``quantize`` call tries: ``steps`` itself; with ``verify``, also ``steps`` without
    equalization and the plain calibration (the one with the lowest output error is kept)."""
    if not steps.verify:
        return [steps]
    out = [steps]
    if steps.equalization is not None:
        out.append(replace(steps, equalization=None))
    if steps.exponent_search or steps.bias_correction:
        out.append(replace(steps, equalization=None, exponent_search=False, bias_correction=False))
    return out


def output_error(q: dict[str, np.ndarray], f: dict[str, np.ndarray]) -> float:
    """Noise-to-signal power ratio of ``q`` against ``f`` per sample, averaged over samples and outputs
    (ESP-PPQ's "snr" metric, esp_ppq_facts.md §5.1)."""
    errs = []
    for name, ref in f.items():
        r = ref.reshape(ref.shape[0], -1).astype(np.float64)
        d = q[name].reshape(r.shape).astype(np.float64) - r
        errs.append(float(np.mean((d**2).sum(1) / ((r**2).sum(1) + 1e-7))))
    return float(np.mean(errs))


def select(models: list, float_graph: Graph, batches: list[dict[str, np.ndarray]]):
    """Of ``models`` (:class:`~espq.quant.model.QuantizedModel`, the last one the plain calibration), the
    one whose outputs are closest to ``float_graph``'s on the calibration ``batches`` kept for bias
    correction; the plain one unless another is at least ``SELECT_MARGIN`` closer (a few dozen images
    cannot tell smaller differences apart, and the plain calibration is the conservative choice)."""
    from espq.sim.float import run_float

    feeds = {k: v.numpy() for k, v in stack_batches(batches, MAX_ELEMENTS).items()}
    reference = run_float(float_graph, feeds)
    errors = [output_error(m.run(feeds), reference) for m in models]
    best = int(np.argmin(errors))
    return models[best] if errors[best] < (1.0 - SELECT_MARGIN) * errors[-1] else models[-1]


__all__ = [
    "RECIPES",
    "Recipe",
    "Steps",
    "output_error",
    "prepare_graph",
    "resolve",
    "select",
    "settings_from_compat",
    "variants",
]
