"""Quantization recipes: which accuracy steps (:mod:`espq.quant.steps`) ``espq.quantize`` runs.

A recipe is an ordered tuple of step names (or ``(name, options)``); a setting overrides steps by name.

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

The :class:`~espq.quant.setting.QuantSetting` fields ``equalization`` / ``exponent_search`` (both
searches) / ``bias_correction`` set to ``True``/``False`` switch those steps on or off;
``equalization_setting`` replaces the equalization step's options; then ``setting.steps`` overrides any
step by name (:func:`espq.quant.steps.resolve_steps`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from espq.errors import ConfigError
from espq.ir import Graph
from espq.quant.bias_correction import MAX_ELEMENTS, stack_batches
from espq.quant.equalization import EqualizationSetting
from espq.quant.metrics import output_error
from espq.quant.steps import (
    GRAPH,
    KEEP_MARGIN,
    PLAN,
    STEPS,
    Step,
    StepContext,
    StepSpec,
    make_step,
    resolve_steps,
    run_steps,
)
from espq.targets import Target

if TYPE_CHECKING:
    from espq.quant.setting import QuantSetting


SELECT_MARGIN = KEEP_MARGIN  # "best" keeps its extra steps only when they cut the output error by >= 10 %


@dataclass(frozen=True)
class Recipe:
    """A named, ordered tuple of accuracy steps (names or ``(name, options)``); ``verify``: also build
    the variants of :func:`variants` and keep the one closest to the float model."""

    name: str
    steps: tuple[str | StepSpec, ...] = ()
    verify: bool = False


RECIPES: dict[str, Recipe] = {
    "espdl": Recipe("espdl"),
    "best": Recipe(
        "best",
        (
            ("equalization", {"opt_level": 2, "iterations": 10}),
            "exponent_search",
            "output_search",
            "bias_correction",
        ),
        verify=True,
    ),
}

#: the legacy QuantSetting fields and the steps each one switches
_FIELD_STEPS = {
    "equalization": ("equalization",),
    "exponent_search": ("exponent_search", "output_search"),
    "bias_correction": ("bias_correction",),
}


@dataclass(frozen=True)
class Steps:
    """What one ``quantize`` call does: the recipe's steps resolved against the setting's overrides."""

    recipe: str
    steps: tuple[StepSpec, ...] = ()
    verify: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.steps)

    @property
    def equalization(self) -> EqualizationSetting | None:
        """The equalization step's settings, ``None`` when it does not run."""
        opts = dict(self.steps).get("equalization")
        return None if opts is None else EqualizationSetting(**opts)

    @property
    def exponent_search(self) -> bool:
        return "exponent_search" in self.names

    @property
    def bias_correction(self) -> bool:
        return "bias_correction" in self.names

    def stage(self, stage: str) -> tuple[StepSpec, ...]:
        """The ``(name, options)`` of the steps of ``stage`` (:data:`~espq.quant.steps.GRAPH`/``PLAN``)."""
        return tuple(s for s in self.steps if STEPS[s[0]].stage == stage)

    def build(self, stage: str) -> list[Step]:
        """Instances of the steps of ``stage``, in order."""
        return [make_step(name, options) for name, options in self.stage(stage)]


def resolve(setting: QuantSetting, recipe: str | None = None) -> Steps:
    """The steps for ``setting`` with ``recipe`` (``None`` = ``setting.recipe``)."""
    name = setting.recipe if recipe is None else recipe
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    r = RECIPES[name]
    overrides: dict[str, Any] = {}
    for field_name, step_names in _FIELD_STEPS.items():
        value = getattr(setting, field_name)
        if value is not None:
            overrides.update(dict.fromkeys(step_names, bool(value)))
    specs = resolve_steps(r.steps, overrides)
    if setting.equalization_setting is not None and "equalization" in dict(specs):
        specs = resolve_steps(specs, {"equalization": asdict(setting.equalization_setting)})
    specs = resolve_steps(specs, setting.steps)
    steps = Steps(recipe=name, steps=specs, verify=r.verify)
    steps.build(GRAPH)  # options checked now, not after calibration
    steps.build(PLAN)
    return steps


def prepare_graph(graph: Graph, steps: Steps, target: Target) -> Graph:
    """The float graph after the :data:`~espq.quant.steps.GRAPH`-stage steps (equalization); ``graph``
    itself is not changed."""
    return run_steps(steps.build(GRAPH), StepContext(graph=graph, target=target)).graph


#: ESP-PPQ switch -> (espq step, the fields of its ``<switch>_setting`` that are the step's options)
_COMPAT_STEPS = (
    ("lsq_optimization", "lsq", "interested_layers lr collecting_device steps is_scale_trainable gamma "
     "block_size"),
    ("tqt_optimization", "tqt", "interested_layers steps lr block_size is_scale_trainable gamma int_lambda "
     "collecting_device"),
    ("blockwise_reconstruction", "blockwise_reconstruction", "interested_layers is_scale_trainable lr steps "
     "gamma collecting_device block_size"),
)  # fmt: skip


def _fields(obj: Any, names: str) -> dict[str, Any]:
    return {n: getattr(obj, n) for n in names.split()}


def settings_from_compat(compat: Any, setting: QuantSetting) -> QuantSetting:
    """Fill ``setting``'s accuracy fields from an ESP-PPQ-style settings object (``espq.api.settings``).

    ``equalization=True`` forces equalization with ``equalization_setting`` (ESP-PPQ's meaning);
    ``bias_correct=True`` forces ESP-PPQ's block bias correction with ``bias_correct_setting``'s fields;
    ``False`` (ESP-PPQ's default) leaves equalization and bias correction to the recipe.
    ``tqt_optimization`` / ``lsq_optimization`` / ``blockwise_reconstruction`` ``=True`` add the steps
    "tqt" / "lsq" / "blockwise_reconstruction" with their ``*_setting``'s fields as options.
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
        bias = getattr(compat, "bias_correct_setting", None)
        if bias is not None:  # ESP-PPQ's block bias correction with its fields
            names = "block_size steps interested_layers collecting_device"
            setting.steps = {**setting.steps, "bias_correction": _fields(bias, names)}
    if getattr(compat, "quant_config_modify", False):  # focused quantization: {op name: scale}
        setting.output_scales = dict(compat.quant_config_modify_setting.custom_config)
    for switch, step, names in _COMPAT_STEPS:  # ESP-PPQ's setting fields are the step's options
        if getattr(compat, switch, False):
            setting.steps = {**setting.steps, step: _fields(getattr(compat, f"{switch}_setting"), names)}
    setting.validate()
    return setting


def variants(steps: Steps) -> list[Steps]:
    """The step sets one ``quantize`` call tries: ``steps`` itself; with ``verify``, also ``steps`` without
    the graph-stage steps (equalization) and the plain calibration (the one with the lowest output error
    is kept)."""
    if not steps.verify:
        return [steps]
    out = [steps]
    if steps.stage(GRAPH):
        out.append(replace(steps, steps=steps.stage(PLAN)))
    if steps.stage(PLAN):
        out.append(replace(steps, steps=()))
    return out


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
    "SELECT_MARGIN",
    "prepare_graph",
    "resolve",
    "select",
    "settings_from_compat",
    "variants",
]
