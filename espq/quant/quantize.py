"""``espq.quantize``: load → capability check → plan → one calibration pass → QuantizedModel."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir import quant_rules as rules
from espq.ir.passes.split_mixed_outputs import split_concat_outputs
from espq.ir.spec import F32, OBSERVED, QuantPlan
from espq.quant import quality, recipes
from espq.quant.bias_correction import MAX_ELEMENTS, correct_biases, keep_batches, stack_batches
from espq.quant.calib_check import check_calibration, check_finite_parameters
from espq.quant.calibrate import collect_statistics, resolve_exponents
from espq.quant.data import iter_feeds
from espq.quant.focused import focused_group_exponents
from espq.quant.metrics import output_error
from espq.quant.model import QuantizedModel
from espq.quant.plan import PlanSkeleton, build_plan
from espq.quant.setting import QuantSetting
from espq.quant.steps import GRAPH, PLAN, StepContext, run_steps
from espq.sim.fakequant import FakeQuantSim, quantize_parameters
from espq.sim.float import run_float
from espq.targets import CapabilityReport, Target, check_model, get_target


def node_types_from_report(graph: Graph, report: CapabilityReport, overrides: dict) -> dict[str, str]:
    """quant_type per node from the capability check; a Relu fused into a Conv/Gemm/MatMul follows
    its host's width unless the Relu itself was overridden."""
    types = {}
    for cap in report.nodes:
        types[cap.name] = cap.quant_type.value if cap.quant_type is not None else F32
    for node in graph.nodes:
        if node.op_type != "Relu" or node.name in overrides or not node.inputs:
            continue
        host = graph.producer(node.inputs[0])
        if (
            host is not None
            and host.op_type in rules.RELU_FUSION_HOSTS
            and len(graph.consumers(node.inputs[0])) == 1
            and types.get(host.name, F32) != F32
        ):
            types[node.name] = types[host.name]
    return types


def split_shared_parameters(graph: Graph) -> int:
    """Give every node its own copy of an initializer read by several nodes (ESP-DL needs one consumer
    per parameter, and each consumer may quantize it differently). Returns the number of copies made."""
    made = 0
    for name in list(graph.initializers):
        consumers = graph.consumers(name)
        for node in consumers[1:]:
            new = graph.unique_name(f"{name}__{node.name}")
            graph.initializers[new] = graph.initializers[name]
            node.inputs = [new if i == name else i for i in node.inputs]
            made += 1
    if made:
        graph.invalidate()
    return made


def prepare_inputs(
    model_or_graph: Any,
    target: str | Target,
    setting: QuantSetting | None,
    recipe: str | None,
    input_shape: Any,
) -> tuple[Target, QuantSetting, recipes.Steps, Graph]:
    """Target, validated setting, resolved recipe steps and the loaded graph (shared parameters split)."""
    from espq.frontends import load

    tgt = get_target(target)
    setting = setting or QuantSetting()
    setting.validate()
    steps = recipes.resolve(setting, recipe)
    graph = load(model_or_graph, input_shape=input_shape)
    split_shared_parameters(graph)
    return tgt, setting, steps, graph


def _check_bits(bits: Any) -> int:
    if isinstance(bits, bool) or bits not in (8, 16):
        raise ConfigError(f"bits must be 8 or 16 (ESP-DL runs int8 and int16), got {bits!r}")
    return int(bits)


def quantize(
    model_or_graph: Any,
    calib_data: Iterable[Any] | None,
    target: str | Target = "esp32p4",
    bits: int = 8,
    calib_steps: int | None = None,
    collate_fn: Callable[[Any], Any] | None = None,
    setting: QuantSetting | None = None,
    plan: str | Path | QuantPlan | None = None,
    input_shape: Any = None,
    progress: bool = True,
    device: str = "cpu",
    recipe: str | None = None,
    on_damage: str = "warn",
    split_mixed_outputs: bool = True,
) -> QuantizedModel:
    """Quantize a model for ``target`` at ``bits`` (8 or 16) with power-of-two exponents.

    ``model_or_graph``: anything :func:`espq.load` accepts, or a :class:`espq.ir.Graph`.
    ``calib_data``: an iterable of batches (arrays, tensors, tuples/lists per input, dicts by input
    name); ``calib_steps`` batches are used (the iterable is repeated if shorter). ``plan``: a plan saved
    by :meth:`QuantizedModel.save_plan` to re-apply without calibrating (``calib_data`` may then be None;
    with bias correction in the recipe, biases are only corrected when data is given).
    ``recipe``: "espdl" or "best" (:mod:`espq.quant.recipes`); ``None`` = ``setting.recipe``. The
    returned model's ``steps`` records the steps it was built with ("best" may drop equalization); re-apply
    a saved plan with the same steps (e.g. ``QuantSetting(equalization=False)`` when they say so).
    ``on_damage``: what the quality gate (:mod:`espq.quant.quality`, report in ``qm.quality``) does with
    damaged outputs/channels/ops: "warn" (default), "error" (raise) or "fix" (re-quantize once with the
    findings' fixes, calibrating on the kept calibration batches: int16 for the op, another observer, a
    mixed-range Concat output split into its parts, recorded in ``qm.graph.metadata["espq.split_outputs"]``).
    ``split_mixed_outputs`` (default True): a graph output made by a Concat whose parts differ in range by
    >= 2**4 on the first calibration batch (YOLO's box pixels next to its class scores) is split into its
    parts before calibrating, so each part gets its own exponent; the exported file has the parts as
    outputs and ``qm.run``/``run_espdl`` also return the original name, re-joined
    (:mod:`espq.ir.passes.split_mixed_outputs`); ``qm.quality.applied`` says what was split. A plan saved
    from a split model re-applies with the same split.
    """
    bits = _check_bits(bits)
    if on_damage not in quality.ON_DAMAGE:
        raise ConfigError(f"on_damage must be one of {quality.ON_DAMAGE}, got {on_damage!r}")
    tgt, setting, steps, base = prepare_inputs(model_or_graph, target, setting, recipe, input_shape)
    if plan is not None:
        loaded = plan if isinstance(plan, QuantPlan) else QuantPlan.load(plan)
        split_concat_outputs(base, _split_in_plan(base, loaded))
        graph = recipes.prepare_graph(base, steps, tgt)
        report, skeleton = plan_skeleton(graph, tgt, bits, setting)
        _check_plan_matches(loaded, skeleton.plan, tgt)
        float_graph = graph.copy()  # bias correction writes into ``graph``
        if steps.bias_correction and calib_data is not None:  # the one step that needs no exponent search
            correct_biases(graph, loaded, tgt, list(iter_feeds(graph, calib_data, calib_steps, collate_fn)))
        qm = QuantizedModel(graph, loaded, tgt, report, float_graph=float_graph, steps=steps)
        qm.quality = None  # a re-applied plan is not checked (no calibration statistics)
        return qm
    variants = recipes.variants(steps)
    feeds = iter_feeds(base, calib_data, calib_steps, collate_fn)
    split_lines: list[str] = []
    if split_mixed_outputs:
        first = next(feeds)
        feeds = itertools.chain([first], feeds)
        split_lines = _split_mixed(base, first)
    graph_steps = [v.stage(GRAPH) for v in variants]  # one float graph (and calibration) per distinct list
    distinct = [s for i, s in enumerate(graph_steps) if s not in graph_steps[:i]]
    if len(distinct) > 1:
        feeds = list(feeds)  # one calibration pass per float graph
    kept: list = []
    models = []
    for prepared in distinct:
        group = [v for v, s in zip(variants, graph_steps) if s == prepared]
        graph = recipes.prepare_graph(base.copy(), group[0], tgt)
        report, skeleton = plan_skeleton(graph, tgt, bits, setting)
        batches = keep_batches(iter(feeds), kept) if not models else iter(feeds)
        stats = calibration_statistics(
            graph, skeleton, tgt, batches, skeleton.observed_tensors, calib_steps, progress, device
        )
        for v in group:
            g = graph.copy()  # the steps' parameter changes go into the copy; ``graph`` stays float
            final = finish_plan(copy.deepcopy(skeleton), g, stats, setting, v, tgt, kept, progress)
            models.append(QuantizedModel(g, final, tgt, report, stats=stats, float_graph=graph, steps=v))
    qm = models[0] if len(models) == 1 else recipes.select(models, base, kept)

    def refit(fixed: QuantSetting, splits: list[str]) -> QuantizedModel:
        graph = base.copy()
        split_concat_outputs(graph, splits)
        return quantize(
            graph,
            kept,
            tgt,
            bits,
            setting=fixed,
            progress=False,
            device=device,
            recipe=recipe,
            on_damage="warn",
        )

    qm = quality.gate(qm, kept, on_damage, setting, refit)
    if qm.quality is not None:
        qm.quality.applied[:0] = split_lines
    return qm


def _split_mixed(graph: Graph, feeds: dict) -> list[str]:
    """Split ``graph``'s mixed-range Concat outputs (measured on ``feeds``) into their parts; one line
    per split for ``qm.quality.applied``."""
    mixed = quality.mixed_range_outputs(graph, feeds)
    if not mixed:
        return []
    concats = {out: graph.producer(out).name for out in mixed}
    done = split_concat_outputs(graph, list(mixed))
    return [
        f"split_output: '{out}' (op '{concats[out]}'): parts differ in range by {mixed[out]}; "
        f"exported as outputs {done[out]} (qm.run/run_espdl re-join them as '{out}')"
        for out in done
    ]


def _split_in_plan(graph: Graph, plan: QuantPlan) -> list[str]:
    """Concat graph outputs a saved ``plan`` has no spec for while it has specs for all their parts (the
    plan was made with the output split)."""
    found = []
    for out in graph.outputs:
        node = graph.producer(out)
        if node is not None and node.op_type == "Concat" and out not in plan.tensors:
            if node.inputs and all(t in plan.tensors and t not in graph.initializers for t in node.inputs):
                found.append(out)
    return found


def plan_skeleton(graph: Graph, target: Target, bits: int, setting: QuantSetting):
    """Capability check and plan skeleton (no exponents) for ``graph`` with ``setting.precision``."""
    report = check_model(graph, target, bits, overrides=setting.precision)
    node_types = node_types_from_report(graph, report, setting.precision)
    return report, build_plan(graph, node_types, target, bits, calib_algorithm=setting.algorithm(bits))


def calibration_statistics(
    graph: Graph,
    skeleton: PlanSkeleton,
    target: Target,
    feeds: Iterable[dict],
    tensors: Iterable[str],
    total: int | None = None,
    progress: bool = True,
    device: str = "cpu",
) -> dict:
    """Statistics of ``tensors`` over ``feeds`` with the weights fake-quantized as ``skeleton`` plans
    (as ESP-PPQ does)."""
    check_finite_parameters(graph)
    weights_only = resolve_exponents(_params_only(skeleton), graph, {})
    calib_graph = graph.copy()
    calib_graph.initializers = quantize_parameters(graph, weights_only, target)
    return collect_statistics(calib_graph, tensors, feeds, total=total, progress=progress, device=device)


def finish_plan(
    skeleton: PlanSkeleton,
    graph: Graph,
    stats: dict,
    setting: QuantSetting,
    steps: recipes.Steps,
    target: Target,
    batches: list[dict],
    progress: bool = False,
) -> QuantPlan:
    """Exponents from ``stats`` (observers), then the recipe's plan-stage steps (:mod:`espq.quant.steps`:
    exponent searches, bias correction...) on the kept calibration ``batches``. Parameter changes of the
    steps (corrected biases) are written into ``graph.initializers``."""
    algorithms = {
        spec.group: setting.layer_calib_algorithm[name]
        for name, spec in skeleton.plan.tensors.items()
        if name in setting.layer_calib_algorithm and spec.group
    }
    focused = focused_group_exponents(graph, skeleton, setting.output_scales)
    final = resolve_exponents(skeleton, graph, stats, algorithms, focused)
    check_calibration(graph, final, stats)
    context = StepContext(
        graph=graph,
        target=target,
        plan=final,
        skeleton=skeleton,
        stats=stats,
        batches=batches,
        float_graph=graph,
        setting=setting,
        progress=progress,
    )
    context = run_steps(steps.build(PLAN), context, output_error_of(graph, batches))
    if context.graph is not graph:
        graph.initializers = context.graph.initializers
    return context.plan


def output_error_of(float_graph: Graph, batches: list[dict]) -> Callable[[StepContext], float]:
    """The error function of :data:`~espq.quant.steps.IF_BETTER` steps: the graph outputs'
    noise-to-signal ratio of a context's model against ``float_graph`` on the kept ``batches``
    (the float outputs are computed once, on first use)."""
    cache: dict[str, dict] = {}

    def error(context: StepContext) -> float:
        if not cache:
            cache["feeds"] = {k: v.numpy() for k, v in stack_batches(batches, MAX_ELEMENTS).items()}
            cache["reference"] = run_float(float_graph, cache["feeds"])
        sim = FakeQuantSim(context.graph, context.plan, context.target)
        feeds = {k: torch.as_tensor(v) for k, v in cache["feeds"].items()}
        with torch.no_grad():
            out = sim.run_torch(feeds, outputs=list(float_graph.outputs))
        return output_error({k: v.float().numpy() for k, v in out.items()}, cache["reference"])

    return error


def _params_only(skeleton: PlanSkeleton) -> PlanSkeleton:
    """A skeleton copy holding only the observed weight specs (for calibration-time weight rounding)."""
    p = skeleton.plan
    tensors = {k: v for k, v in p.tensors.items() if v.source == OBSERVED and v.group is None}
    return PlanSkeleton(QuantPlan(p.target, p.bits, dict(p.node_types), tensors), {})


def _check_plan_matches(loaded: QuantPlan, fresh: QuantPlan, target: Target) -> None:
    if loaded.target != target.name:
        raise ConfigError(f"the plan was made for target '{loaded.target}', not '{target.name}'")
    missing = sorted(set(fresh.tensors) - set(loaded.tensors))
    unknown = sorted(set(loaded.node_types) - set(fresh.node_types))
    if missing or unknown:
        raise ConfigError(
            f"the plan does not fit this model: {len(missing)} tensor(s) without a spec "
            f"(e.g. {missing[:3]}), "
            f"{len(unknown)} node(s) not in the model (e.g. {unknown[:3]}); recalibrate instead"
        )
    if any(s.exponent is None for s in loaded.tensors.values()):
        raise ConfigError("the plan has tensors without exponents; it was not calibrated")


__all__ = [
    "calibration_statistics",
    "finish_plan",
    "node_types_from_report",
    "output_error_of",
    "plan_skeleton",
    "quantize",
    "split_shared_parameters",
]
