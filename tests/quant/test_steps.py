"""The accuracy-step protocol: registry, resolution against setting overrides, keep-or-roll-back."""

from __future__ import annotations

from typing import ClassVar

import pytest
from qhelpers import conv_relu_add_model

from espq.errors import ConfigError
from espq.ir.onnx_io import graph_from_onnx
from espq.quant.setting import QuantSetting
from espq.quant.steps import (
    CALIBRATION_BATCHES,
    FLOAT_REFERENCE,
    IF_BETTER,
    PLAN,
    STEPS,
    TENSOR_STATS,
    Step,
    StepContext,
    make_step,
    register_step,
    required_statistics,
    resolve_steps,
    run_steps,
)
from espq.targets import get_target


class _Scale:
    """A toy step: scales an "error" kept in ``graph.metadata`` (on a copy of the graph)."""

    name: ClassVar[str] = "_toy_scale"
    stage: ClassVar[str] = PLAN
    needs: ClassVar[frozenset[str]] = frozenset({TENSOR_STATS, CALIBRATION_BATCHES})
    keep: ClassVar[str] = IF_BETTER
    order: ClassVar[int] = 250

    def __init__(self, factor: float = 0.5) -> None:
        self.factor = factor

    def apply(self, context: StepContext) -> StepContext:
        g = context.graph.copy()
        g.metadata["err"] = str(float(context.graph.metadata["err"]) * self.factor)
        return context.evolve(graph=g)


class _Late(_Scale):
    name: ClassVar[str] = "_toy_late"
    needs: ClassVar[frozenset[str]] = frozenset({FLOAT_REFERENCE})
    order: ClassVar[int] = 900


@pytest.fixture
def toy_steps():
    register_step(_Scale)
    register_step(_Late)
    yield
    STEPS.pop(_Scale.name)
    STEPS.pop(_Late.name)


def _context(err: float) -> StepContext:
    g = graph_from_onnx(conv_relu_add_model())
    g.metadata["err"] = str(err)
    return StepContext(graph=g, target=get_target("esp32p4"))


def _err(ctx: StepContext) -> float:
    return float(ctx.graph.metadata["err"])


def test_registry_checks_declarations(toy_steps):
    assert isinstance(make_step("_toy_scale"), Step)
    assert make_step("_toy_scale", {"factor": 0.25}).factor == 0.25
    with pytest.raises(ConfigError, match="unknown step '_nope'"):
        make_step("_nope")
    with pytest.raises(ConfigError, match="bad options for step '_toy_scale'"):
        make_step("_toy_scale", {"nope": 1})

    class Bad(_Scale):
        name: ClassVar[str] = "_toy_bad"
        needs: ClassVar[frozenset[str]] = frozenset({"gradients"})

    with pytest.raises(ConfigError, match="unknown statistics"):
        register_step(Bad)
    assert "_toy_bad" not in STEPS


def test_required_statistics_is_the_union(toy_steps):
    steps = [make_step("_toy_scale"), make_step("_toy_late")]
    assert required_statistics(steps) == {TENSOR_STATS, CALIBRATION_BATCHES, FLOAT_REFERENCE}


def test_settings_override_steps_by_name(toy_steps):
    recipe = ("_toy_scale", ("_toy_late", {"factor": 0.9}))
    assert resolve_steps(recipe) == (("_toy_scale", {}), ("_toy_late", {"factor": 0.9}))
    assert resolve_steps(recipe, {"_toy_scale": False}) == (("_toy_late", {"factor": 0.9}),)
    assert resolve_steps(recipe, {"_toy_late": {"factor": 0.1}})[1] == ("_toy_late", {"factor": 0.1})
    # switched on though the recipe lacks it: inserted by ``order`` (250 < 900)
    assert resolve_steps(("_toy_late",), {"_toy_scale": True}) == (("_toy_scale", {}), ("_toy_late", {}))
    with pytest.raises(ConfigError, match="unknown step '_nope'"):
        resolve_steps(recipe, {"_nope": True})
    with pytest.raises(ConfigError, match="override must be True, False or a dict"):
        resolve_steps(recipe, {"_toy_scale": 3})
    with pytest.raises(ConfigError, match="unknown step '_nope'"):
        QuantSetting(steps={"_nope": True}).validate()


def test_if_better_step_is_kept_only_when_it_cuts_the_error(toy_steps):
    before = _context(1.0)
    kept = run_steps([make_step("_toy_scale", {"factor": 0.5})], before, _err)
    assert _err(kept) == 0.5 and kept.applied == ("_toy_scale",)
    # 0.95 is not 10 % better: rolled back to the very context given, graph untouched
    rolled = run_steps([make_step("_toy_scale", {"factor": 0.95})], before, _err)
    assert rolled is before and _err(before) == 1.0 and rolled.applied == ()
    with pytest.raises(ConfigError, match="pass an error function"):
        run_steps([make_step("_toy_scale")], before)


def test_recipes_are_ordered_step_tuples_and_settings_override_by_name():
    from espq.quant.recipes import RECIPES, resolve, variants

    assert {"equalization", "exponent_search", "output_search", "bias_correction"} <= set(STEPS)
    best = resolve(QuantSetting(), "best")
    assert best.names == ("equalization", "exponent_search", "output_search", "bias_correction")
    assert best.equalization.opt_level == 2 and RECIPES["espdl"].steps == ()
    # the legacy field switches both searches; setting.steps overrides by name afterwards
    s = QuantSetting(exponent_search=True, steps={"output_search": False, "bias_correction": True})
    assert resolve(s).names == ("exponent_search", "bias_correction")
    eq = resolve(QuantSetting(recipe="best", steps={"equalization": {"iterations": 3}})).equalization
    assert (eq.opt_level, eq.iterations) == (2, 3)
    with pytest.raises(ConfigError, match="bad options for step 'exponent_search'"):
        resolve(QuantSetting(steps={"exponent_search": {"radius": 2}}))
    assert [v.names for v in variants(best)] == [best.names, best.names[1:], ()]


def test_finish_plan_rolls_back_an_if_better_step_that_does_not_help(toy_steps):
    """A plan-stage IF_BETTER step that worsens the output error is not applied by finish_plan."""
    import copy

    import numpy as np

    from espq.quant.quantize import calibration_statistics, finish_plan, output_error_of, plan_skeleton
    from espq.quant.recipes import resolve

    class Coarse:
        name: ClassVar[str] = "_toy_coarse"
        stage: ClassVar[str] = PLAN
        needs: ClassVar[frozenset[str]] = frozenset({CALIBRATION_BATCHES})
        keep: ClassVar[str] = IF_BETTER
        order: ClassVar[int] = 999

        def __init__(self, shift: int = 4) -> None:
            self.shift = shift

        def apply(self, context: StepContext) -> StepContext:
            plan = copy.deepcopy(context.plan)  # every activation 2^shift coarser: much worse
            plan.tensors = {
                k: v.with_exponent(int(v.exponent) + self.shift) if v.group and v.exponent is not None else v
                for k, v in plan.tensors.items()
            }
            return context.evolve(plan=plan)

    register_step(Coarse)
    try:
        graph = graph_from_onnx(conv_relu_add_model())
        target = get_target("esp32p4")
        rng = np.random.default_rng(0)
        batches = [{"x": rng.standard_normal((8, 3, 8, 8)).astype(np.float32)} for _ in range(2)]
        setting = QuantSetting()
        _, skeleton = plan_skeleton(graph, target, 8, setting)
        stats = calibration_statistics(graph, skeleton, target, iter(batches), skeleton.observed_tensors)
        plain = finish_plan(
            copy.deepcopy(skeleton), graph.copy(), stats, setting, resolve(setting), target, batches
        )
        with_step = resolve(QuantSetting(steps={"_toy_coarse": True}))
        assert with_step.names == ("_toy_coarse",)
        kept = finish_plan(copy.deepcopy(skeleton), graph.copy(), stats, setting, with_step, target, batches)
        assert kept.to_json() == plain.to_json()  # rolled back
        error = output_error_of(graph, batches)
        base = StepContext(graph=graph, target=target, plan=plain)
        assert error(Coarse().apply(base)) > 2 * error(base) > 0  # the step really hurts
        helpful = resolve(QuantSetting(steps={"_toy_coarse": {"shift": 0}}))  # no change: not 10 % better
        assert (
            finish_plan(skeleton, graph.copy(), stats, setting, helpful, target, batches).to_json()
            == plain.to_json()
        )
    finally:
        STEPS.pop("_toy_coarse")
