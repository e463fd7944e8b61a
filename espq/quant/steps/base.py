"""The accuracy-step protocol: one :class:`Step` per algorithm, a registry by name, a context record.

A step (equalization, exponent search, bias correction, TQT, ...) is a class with

* ``name``: its registry key (what recipes list and settings override);
* ``stage``: :data:`GRAPH` (runs on the float graph before planning and calibration, e.g. equalization)
  or :data:`PLAN` (runs after calibration on the calibrated plan, e.g. exponent search);
* ``needs``: the statistics it reads (:data:`TENSOR_STATS`, :data:`CALIBRATION_BATCHES`,
  :data:`FLOAT_REFERENCE`), declared so that one calibration pass collects everything the recipe's steps
  need (:func:`required_statistics`);
* ``keep``: :data:`ALWAYS` or :data:`IF_BETTER` (keep the step's result only when it cuts the graph
  outputs' error against the float model, :func:`keep_if_better`; otherwise roll back to the context
  before the step);
* ``order``: where a setting inserts the step when the recipe does not list it (before the first listed
  step with a larger ``order``);
* ``apply(context) -> context``: the new graph/plan as a new :class:`StepContext`. A step must not change
  the objects of the context it was given (copy the graph/plan first), so a rolled-back step leaves no
  trace.

Options: a step's constructor takes its options as keyword arguments (a recipe or a setting passes
them by name, see :func:`make_step`); ``Step()`` must work (every option has a default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir.spec import QuantPlan
from espq.targets import Target

if TYPE_CHECKING:
    from espq.quant.observers import TensorStats
    from espq.quant.plan import PlanSkeleton
    from espq.quant.setting import QuantSetting

GRAPH = "graph"  # before planning: transforms the float graph
PLAN = "plan"  # after calibration: refines the plan (and may write corrected parameters into the graph)
STAGES = (GRAPH, PLAN)

TENSOR_STATS = "tensor_stats"  # observer statistics (histograms, ranges) of the plan's observed tensors
CALIBRATION_BATCHES = "calibration_batches"  # the kept calibration batches (raw feeds)
FLOAT_REFERENCE = "float_reference"  # the float model's outputs on the kept batches
STATISTICS = (TENSOR_STATS, CALIBRATION_BATCHES, FLOAT_REFERENCE)

ALWAYS = "always"
IF_BETTER = "if_better"

#: :data:`IF_BETTER` keeps a step only when it lowers the output error by at least this fraction
KEEP_MARGIN = 0.1


@dataclass
class StepContext:
    """Everything a step reads, and what it hands to the next step.

    ``graph`` is the float graph the plan quantizes; ``plan`` is ``None`` at the :data:`GRAPH` stage.
    ``skeleton``/``stats`` come from planning/calibration (``stats``: tensor name ->
    :class:`~espq.quant.observers.TensorStats`). ``batches`` are the kept calibration batches (input
    name -> array); ``float_graph`` is the float reference model (before any step wrote into ``graph``).
    ``applied`` lists the names of the steps applied so far (a rolled-back step is not listed).
    """

    graph: Graph
    target: Target
    plan: QuantPlan | None = None
    skeleton: PlanSkeleton | None = None
    stats: dict[str, TensorStats] = field(default_factory=dict)
    batches: list[dict[str, np.ndarray]] = field(default_factory=list)
    float_graph: Graph | None = None
    setting: QuantSetting | None = None
    progress: bool = False
    applied: tuple[str, ...] = ()

    def evolve(self, **changes: Any) -> StepContext:
        """A copy with ``changes`` (dataclass ``replace``; graph/plan objects are shared, not copied)."""
        return replace(self, **changes)


@runtime_checkable
class Step(Protocol):
    """One accuracy algorithm (module docstring)."""

    name: ClassVar[str]
    stage: ClassVar[str]
    needs: ClassVar[frozenset[str]]
    keep: ClassVar[str]
    order: ClassVar[int]

    def apply(self, context: StepContext) -> StepContext:
        """The context after this step (new plan and/or graph)."""
        ...


STEPS: dict[str, type] = {}


def register_step(cls: type) -> type:
    """Class decorator: register a step class under ``cls.name`` (checks the declared attributes)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"step class {cls.__name__} needs a non-empty string 'name'")
    if name in STEPS and STEPS[name] is not cls:
        raise ConfigError(f"a step named {name!r} is already registered ({STEPS[name].__name__})")
    if getattr(cls, "stage", None) not in STAGES:
        raise ConfigError(
            f"step {name!r}: stage must be one of {STAGES}, got {getattr(cls, 'stage', None)!r}"
        )
    unknown = set(getattr(cls, "needs", ())) - set(STATISTICS)
    if unknown:
        raise ConfigError(f"step {name!r} needs unknown statistics {sorted(unknown)}; known: {STATISTICS}")
    if getattr(cls, "keep", None) not in (ALWAYS, IF_BETTER):
        raise ConfigError(f"step {name!r}: keep must be {ALWAYS!r} or {IF_BETTER!r}")
    if not isinstance(getattr(cls, "order", None), int):
        raise ConfigError(f"step {name!r} needs an integer 'order'")
    STEPS[name] = cls
    return cls


def make_step(name: str, options: dict[str, Any] | None = None) -> Step:
    """An instance of the registered step ``name`` with ``options`` (keyword arguments)."""
    if name not in STEPS:
        raise ConfigError(f"unknown step {name!r}; registered steps: {', '.join(sorted(STEPS)) or 'none'}")
    try:
        return STEPS[name](**(options or {}))
    except TypeError as exc:
        raise ConfigError(f"bad options for step {name!r}: {exc}; options given: {options!r}") from exc


StepSpec = tuple[str, dict[str, Any]]  # (step name, options)


def resolve_steps(
    recipe: tuple[str | StepSpec, ...], overrides: dict[str, Any] | None = None
) -> tuple[StepSpec, ...]:
    """The ``(name, options)`` list a recipe runs after a setting's ``overrides`` (step name -> ``False``:
    off, ``True``: on with the recipe's (else default) options, ``dict``: on with these options merged over
    the recipe's). A step switched on that the recipe does not list is inserted by its ``order``."""
    specs: list[StepSpec] = [(r, {}) if isinstance(r, str) else (r[0], dict(r[1])) for r in recipe]
    for name, value in (overrides or {}).items():
        if name not in STEPS:
            raise ConfigError(
                f"unknown step {name!r} in the setting; registered steps: {', '.join(sorted(STEPS))}"
            )
        if not isinstance(value, (bool, dict)):
            raise ConfigError(
                f"step {name!r}: override must be True, False or a dict of options, got {value!r}"
            )
        names = [n for n, _ in specs]
        if value is False:
            specs = [s for s in specs if s[0] != name]
        elif name in names:
            i = names.index(name)
            specs[i] = (name, {**specs[i][1], **(value if isinstance(value, dict) else {})})
        else:
            order = STEPS[name].order
            i = next((k for k, n in enumerate(names) if STEPS[n].order > order), len(specs))
            specs.insert(i, (name, dict(value) if isinstance(value, dict) else {}))
    return tuple(specs)


def required_statistics(steps: list[Step]) -> frozenset[str]:
    """The statistics one calibration pass must collect for ``steps``."""
    out: set[str] = set()
    for step in steps:
        out |= set(step.needs)
    return frozenset(out)


def keep_if_better(
    before: StepContext,
    after: StepContext,
    error: Callable[[StepContext], float],
    margin: float = KEEP_MARGIN,
) -> StepContext:
    """``after`` if its output error (``error(context)``, lower is better) is at least ``margin`` (relative)
    below ``before``'s, else ``before`` (the step is rolled back)."""
    return after if error(after) < (1.0 - margin) * error(before) else before


def run_steps(
    steps: list[Step],
    context: StepContext,
    error: Callable[[StepContext], float] | None = None,
    margin: float = KEEP_MARGIN,
) -> StepContext:
    """Apply ``steps`` in order; an :data:`IF_BETTER` step is kept only by :func:`keep_if_better` (needs
    ``error``). A kept step's name is appended to ``context.applied``."""
    for step in steps:
        after = step.apply(context)
        after = after.evolve(applied=(*context.applied, step.name))
        if step.keep == IF_BETTER:
            if error is None:
                raise ConfigError(f"step {step.name!r} is kept only if it helps; pass an error function")
            after = keep_if_better(context, after, error, margin)
        context = after
    return context


__all__ = [
    "ALWAYS",
    "CALIBRATION_BATCHES",
    "FLOAT_REFERENCE",
    "GRAPH",
    "IF_BETTER",
    "KEEP_MARGIN",
    "PLAN",
    "STEPS",
    "TENSOR_STATS",
    "Step",
    "StepContext",
    "keep_if_better",
    "make_step",
    "register_step",
    "required_statistics",
    "resolve_steps",
    "run_steps",
]
