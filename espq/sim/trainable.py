"""Trainable fake-quant: a ``torch.nn.Module`` computing what :class:`espq.sim.fakequant.FakeQuantSim`
computes, with straight-through gradients.

* Weights (every quantized floating initializer) are ``nn.Parameter`` s, quantized in each forward exactly
  as :func:`espq.sim.fakequant.quantize_parameters` does (float64, ``PARAMETER_ROUNDING``, the spec's
  width, cast back to the initializer's dtype unless wider than 32 bits).
* Every exponent is ``round(α)`` of a trainable ``α = log2(scale)`` (TQT, Jain et al. 2020): one α per
  activation group (tensors that must share one exponent, ``TensorSpec.group``), one α (per channel
  where the plan says so) per observed parameter. Bias exponents are derived as the plan derives them
  (input + weight exponent, :func:`espq.quant.calibrate.derive_bias_spec`), Clip bounds / Pad values take
  their input's exponent, fixed specs (GRU/LSTM) stay fixed.
* Rounding (target rounding for activations, half-even for parameters) passes gradients straight through;
  saturation (clamp) blocks them outside the range, so α gets TQT's gradient.
* The simulator's chip-specific kernels (AveragePool's integer sum and float32 scale, PRelu's floor, int16
  tables) compute the forward values; their gradient is that of the plain float kernel.

In eval mode (or any forward without gradients) the outputs equal the simulator's bit for bit; the test
``tests/sim/test_trainable.py`` checks this on the demo model and ResNet-20. :meth:`exponents` and
:meth:`float_weights` give the trained values back (``QuantizedModel.update`` writes them into a plan).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from espq.errors import InputDataError
from espq.ir import Graph, Node
from espq.ir import quant_rules as rules
from espq.ir.spec import DERIVED, OBSERVED, SHARED, QuantPlan, TensorSpec
from espq.sim.fakequant import FAKEQUANT_OP, HALF_EVEN, WEIGHTED_OPS, FakeQuantSim, _insert_requant_nodes
from espq.sim.float import registry
from espq.sim.float.executor import load_kernels
from espq.sim.float.registry import KERNELS
from espq.targets import Target, get_target


class _Round(torch.autograd.Function):
    """Rounding with an identity gradient (straight-through estimator)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, half_even: bool) -> torch.Tensor:
        return torch.round(x) if half_even else torch.floor(x + 0.5)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class _Replace(torch.autograd.Function):
    """Forward value ``exact``; gradient that of ``surrogate`` (for kernels without a useful gradient)."""

    @staticmethod
    def forward(ctx: Any, exact: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
        ctx.dtype = surrogate.dtype
        return exact.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, grad.to(ctx.dtype)


def round_ste(x: torch.Tensor, half_even: bool = True) -> torch.Tensor:
    """``round(x)`` (half-even or half-up ``floor(x + 0.5)``) with a straight-through gradient."""
    return _Round.apply(x, half_even)


def channel_view(e: torch.Tensor, spec: TensorSpec, ndim: int) -> torch.Tensor:
    """A per-channel exponent (1-D) shaped to broadcast along ``spec.axis`` of an ``ndim``-D tensor;
    a per-tensor one unchanged."""
    if e.ndim != 1:
        return e
    shape = [1] * ndim
    shape[spec.axis] = -1
    return e.reshape(shape)


def fake_quant_ste(
    x: torch.Tensor, exponent: torch.Tensor, spec: TensorSpec, half_even: bool
) -> torch.Tensor:
    """``clamp(round(x · 2^-e)) · 2^e`` in ``x``'s dtype, as :func:`espq.sim.fakequant.fake_quant` computes
    it, differentiable in ``x`` (STE) and in the integer-valued ``exponent`` (per tensor or per channel
    along ``spec.axis``)."""
    e = channel_view(exponent.to(x.dtype), spec, x.ndim)
    if not torch.is_grad_enabled() or not (x.requires_grad or e.requires_grad):
        y = x * torch.exp2(-e)  # the same operations in place, without autograd records
        y = y.round_() if half_even else y.add_(0.5).floor_()
        return y.clamp_(spec.qmin, spec.qmax).mul_(torch.exp2(e))
    y = round_ste(x * torch.exp2(-e), half_even)
    return torch.clamp(y, spec.qmin, spec.qmax) * torch.exp2(e)


def _group_key(group: str) -> str:
    return f"g:{group}"


def _param_key(name: str) -> str:
    return f"w:{name}"


class TrainableFakeQuant(torch.nn.Module):
    """The fake-quant model of ``graph`` + ``plan`` as a trainable module; see the module docstring.

    ``train_weights`` / ``train_exponents`` set ``requires_grad`` of the weights and of the α's.
    ``forward(x)`` takes one tensor per graph input (positional, in graph order) or one dict by input
    name and returns the graph output (a tuple when there are several).
    """

    def __init__(
        self,
        graph: Graph,
        plan: QuantPlan,
        target: Target | str | None = None,
        *,
        int16_lut_step: int = 32,
        train_weights: bool = True,
        train_exponents: bool = False,
    ):
        super().__init__()
        load_kernels()
        self.plan = plan
        self.target = get_target(target or plan.target)
        self.int16_lut_step = int16_lut_step
        self._half_even = self.target.rounding.value == HALF_EVEN
        self._param_half_even = rules.PARAMETER_ROUNDING == HALF_EVEN
        self._source_graph = graph
        self.graph = _insert_requant_nodes(graph, plan)
        self.weight_names: list[str] = []
        self._constants: dict[str, torch.Tensor] = {}
        weights = []
        for name, value in graph.initializers.items():
            spec = plan.tensors.get(name)
            if spec is not None and spec.exponent is not None and np.issubdtype(value.dtype, np.floating):
                self.weight_names.append(name)
                weights.append(
                    torch.nn.Parameter(registry.numpy_to_torch(value), requires_grad=train_weights)
                )
            else:
                self._constants[name] = registry.numpy_to_torch(value)
        self.weights = torch.nn.ParameterList(weights)
        self._weight_index = {n: i for i, n in enumerate(self.weight_names)}
        self.alpha_keys: list[str] = []
        alphas = []
        for key, exponent in self._initial_exponents().items():
            self.alpha_keys.append(key)
            alphas.append(
                torch.nn.Parameter(torch.tensor(exponent, dtype=torch.float32), requires_grad=train_exponents)
            )
        self.alphas = torch.nn.ParameterList(alphas)
        self._alpha_index = {k: i for i, k in enumerate(self.alpha_keys)}
        self._rules = {name: self._param_rule(name, plan.tensors[name]) for name in self.weight_names}
        last_use: dict[str, int] = {}
        for i, node in enumerate(self.graph.nodes):
            for name in node.inputs:
                if name:
                    last_use[name] = i
        self._last_use = last_use
        self._sim: FakeQuantSim | None = None
        self._sim_exponents: dict[str, Any] | None = None
        #: per quantized initializer, a replacement for the rounding of ``w · 2^-e`` (float64, the
        #: exponent broadcast along the channel axis) before the clamp: learned rounding (blockwise
        #: reconstruction) puts ``floor(x) + h(V)`` here; empty = the plan's rounding
        self.parameter_rounding: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}

    # ------------------------------------------------------------------ exponents
    def _initial_exponents(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        specs = list(self.plan.tensors.items()) + [(None, s) for s in self.plan.requant.values()]
        for name, spec in specs:
            if spec.exponent is None:
                continue
            if spec.group is not None:
                out.setdefault(_group_key(spec.group), float(spec.exponent))
            elif spec.source == OBSERVED and name is not None and name in self.graph.initializers:
                e = spec.exponent
                out[_param_key(name)] = [float(v) for v in e] if isinstance(e, tuple) else float(e)
        return out

    def _param_rule(self, name: str, spec: TensorSpec) -> tuple:
        """How a parameter's exponent follows the α's: ("alpha", key) | ("sum", in, w) | ("fixed", e)."""
        if spec.group is not None:
            return ("alpha", _group_key(spec.group))
        if spec.source == OBSERVED:
            return ("alpha", _param_key(name))
        if spec.source in (DERIVED, SHARED) and spec.ref:
            node_name, idx = spec.ref[0].rsplit(":", 1)
            src_tensor = self.graph.node(node_name).inputs[int(idx)]
            src = self.plan.input_spec(node_name, int(idx), src_tensor)
            src_rule = self._activation_rule(src)
            if spec.source == SHARED:
                return src_rule
            return ("sum", src_rule, self._param_rule(spec.ref[1], self.plan.tensors[spec.ref[1]]))
        return ("fixed", spec.exponent)  # FIXED (and specs without a rule)

    def _activation_rule(self, spec: TensorSpec) -> tuple:
        if spec.group is not None and _group_key(spec.group) in self._alpha_index:
            return ("alpha", _group_key(spec.group))
        return ("fixed", spec.exponent)

    def _exponent(self, rule: tuple) -> torch.Tensor:
        kind = rule[0]
        if kind == "alpha":
            return round_ste(self.alphas[self._alpha_index[rule[1]]])
        if kind == "sum":
            return self._exponent(rule[1]) + self._exponent(rule[2])
        e = rule[1]
        return torch.tensor(list(e) if isinstance(e, tuple) else e, dtype=torch.float32)

    def _spec_exponent(self, spec: TensorSpec) -> torch.Tensor:
        return self._exponent(self._activation_rule(spec))

    def alpha(self, key: str) -> torch.nn.Parameter:
        """The α of ``key`` (``"g:<group>"`` for an activation group, ``"w:<tensor>"`` for a parameter)."""
        return self.alphas[self._alpha_index[key]]

    def weight(self, name: str) -> torch.nn.Parameter:
        """The float (unquantized) value of quantized initializer ``name``."""
        return self.weights[self._weight_index[name]]

    def exponents(self) -> dict[str, int | tuple[int, ...]]:
        """The integer exponents now in use: α key -> round(α) (int, or a tuple per channel)."""
        out: dict[str, int | tuple[int, ...]] = {}
        with torch.no_grad():
            for key, a in zip(self.alpha_keys, self.alphas):
                r = torch.round(a.detach().cpu())
                out[key] = tuple(int(v) for v in r.tolist()) if r.ndim else int(r.item())
        return out

    def float_weights(self) -> dict[str, np.ndarray]:
        """The trained float weights (initializer name -> array with the initializer's dtype)."""
        return {n: w.detach().cpu().numpy().copy() for n, w in zip(self.weight_names, self.weights)}

    def keys_of_nodes(self, start: int, stop: int) -> tuple[list[str], list[str]]:
        """α keys and weight names that nodes ``start`` .. ``stop - 1`` of :attr:`graph` quantize:
        the groups of the tensors they round (outputs, requantized inputs) and their parameters."""
        alphas: dict[str, None] = {}
        weights: dict[str, None] = {}
        rounded = self._current_sim().rounded_outputs
        for node in self.graph.nodes[start:stop]:
            specs = [rounded[o] for o in node.outputs if o in rounded]
            if node.op_type == FAKEQUANT_OP:
                specs.append(self.plan.requant[node.attrs["key"]])
            for spec in specs:
                if spec.group is not None and _group_key(spec.group) in self._alpha_index:
                    alphas.setdefault(_group_key(spec.group))
            for name in node.inputs:
                if name in self._weight_index:
                    weights.setdefault(name)
                    rule = self._rules[name]
                    if rule[0] == "alpha":
                        alphas.setdefault(rule[1])
        return list(alphas), list(weights)

    # ------------------------------------------------------------------ kernels
    def _current_sim(self) -> FakeQuantSim:
        """A simulator on the current integer exponents (its chip-specific kernels read the plan)."""
        exps = self.exponents()
        if self._sim is None or exps != self._sim_exponents:
            plan = plan_with_exponents(self.plan, exps)
            self._sim = FakeQuantSim(self._source_graph, plan, self.target, self.int16_lut_step)
            self._sim_exponents = exps
        return self._sim

    def _kernel_table(self, sim: FakeQuantSim) -> dict:
        table = dict(KERNELS)
        for op, fn in sim.kernels.items():
            if op == FAKEQUANT_OP:
                continue
            table[op] = fn if op in WEIGHTED_OPS else _straight_through(fn, KERNELS[op])
        plan, half_even = self.plan, self._half_even

        def requant(node: Node, inputs: list) -> list:
            spec = plan.requant[node.attrs["key"]]
            return [fake_quant_ste(inputs[0], self._spec_exponent(spec), spec, half_even)]

        table[FAKEQUANT_OP] = requant
        return table

    def _parameter_now(self, name: str, device: torch.device) -> torch.Tensor:
        """Quantized initializer ``name`` as :func:`espq.sim.fakequant.quantize_parameters` computes it."""
        w = self.weights[self._weight_index[name]]
        spec = self.plan.tensors[name]
        x = w.to(device).double()
        if spec.per_channel and x.ndim == 0:
            x = x.reshape(1)
        e = self._exponent(self._rules[name]).to(device)
        rounding = self.parameter_rounding.get(name)
        if rounding is None:
            q = fake_quant_ste(x, e, spec, self._param_half_even).reshape(w.shape)
        else:
            scale = torch.exp2(channel_view(e.to(x.dtype), spec, x.ndim))
            q = (torch.clamp(rounding(x / scale), spec.qmin, spec.qmax) * scale).reshape(w.shape)
        return q if spec.bits > 32 else q.to(w.dtype)

    # ------------------------------------------------------------------ running
    def quantized_feeds(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The graph inputs rounded to their specs (as :meth:`FakeQuantSim.quantized_feeds`)."""
        out = {}
        for name, value in feeds.items():
            spec = self.plan.tensors.get(name)
            v = torch.as_tensor(value)
            out[name] = (
                fake_quant_ste(v.float(), self._spec_exponent(spec), spec, self._half_even) if spec else v
            )
        return out

    def run_segment(
        self, env: Mapping[str, torch.Tensor], start: int, stop: int, keep: Iterable[str] = ()
    ) -> dict[str, torch.Tensor]:
        """Nodes ``start`` .. ``stop - 1`` of :attr:`graph` from the live tensors ``env`` (begin with
        :meth:`quantized_feeds` at node 0); returns the tensors live afterwards plus ``keep`` and the graph
        outputs produced. Differentiable when gradients are enabled."""
        state = dict(env)
        device = next(iter(state.values())).device if state else torch.device("cpu")
        sim = self._current_sim()
        table = self._kernel_table(sim)
        rounded = sim.rounded_outputs
        params: dict[str, torch.Tensor] = {}  # quantized on first use, once per call
        keep_set = set(keep) | set(self.graph.outputs)
        token = registry.set_current_graph(self.graph)
        try:
            for i in range(start, stop):
                node = self.graph.nodes[i]
                args = [self._fetch(n, state, params, device) for n in node.inputs]
                results = table[node.op_type](node, args)
                for k, out_name in enumerate(node.outputs):
                    if not out_name or k >= len(results):
                        continue
                    t = results[k].to(device)
                    spec = rounded.get(out_name)
                    if spec is not None and t.is_floating_point():
                        t = fake_quant_ste(t, self._spec_exponent(spec), spec, self._half_even).float()
                    elif t.dtype == torch.float64:
                        t = t.float()
                    state[out_name] = t
                for name in set(node.inputs) | set(node.outputs):
                    if name and name not in keep_set and self._last_use.get(name, -1) <= i:
                        state.pop(name, None)
        finally:
            registry.reset_current_graph(token)
        return state

    def _fetch(
        self, name: str, state: dict, params: dict[str, torch.Tensor], device: torch.device
    ) -> torch.Tensor | None:
        if not name:
            return None
        if name in state:
            return state[name]
        if name in self._weight_index:
            if name not in params:
                params[name] = self._parameter_now(name, device)
            return params[name]
        return self._constants[name].to(device)

    def run(self, feeds: Mapping[str, torch.Tensor], outputs: Iterable[str] | None = None) -> dict:
        """Run the whole graph on ``feeds`` (input name -> tensor); returns ``outputs`` (default: the graph
        outputs) by name."""
        missing = [n for n in self.graph.inputs if n not in feeds]
        if missing:
            raise InputDataError(f"graph '{self.graph.name}' needs input(s) {missing}, got {sorted(feeds)}")
        wanted = list(self.graph.outputs if outputs is None else outputs)
        state = self.run_segment(self.quantized_feeds(feeds), 0, len(self.graph.nodes), keep=wanted)
        return {w: state[w] for w in wanted}

    def forward(self, *inputs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Graph outputs for one tensor per graph input (or one dict by input name)."""
        if len(inputs) == 1 and isinstance(inputs[0], Mapping):
            feeds = dict(inputs[0])
        else:
            if len(inputs) != len(self.graph.inputs):
                raise InputDataError(
                    f"graph '{self.graph.name}' has inputs {self.graph.inputs}; pass one tensor each "
                    f"(got {len(inputs)})"
                )
            feeds = dict(zip(self.graph.inputs, inputs))
        out = self.run(feeds)
        values = tuple(out[n] for n in self.graph.outputs)
        return values[0] if len(values) == 1 else values


def _straight_through(exact_fn, surrogate_fn):
    """A kernel whose values are ``exact_fn``'s and whose gradient is ``surrogate_fn``'s."""

    def kernel(node: Node, inputs: list) -> list:
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
        if not needs_grad:
            return exact_fn(node, inputs)
        with torch.no_grad():
            exact = exact_fn(node, [None if t is None else t.detach() for t in inputs])
        surrogate = surrogate_fn(node, inputs)
        return [_Replace.apply(e, s) for e, s in zip(exact, surrogate)]

    return kernel


def plan_with_exponents(plan: QuantPlan, exps: Mapping[str, Any]) -> QuantPlan:
    """A copy of ``plan`` with the activation groups' and observed parameters' exponents from ``exps``
    (α keys as :meth:`TrainableFakeQuant.exponents` returns them). Dependent specs (biases, Clip bounds) are
    not re-derived here: :func:`espq.quant.calibrate.resolve_dependent_specs` does that."""

    def apply(name: str | None, spec: TensorSpec) -> TensorSpec:
        if spec.group is not None and _group_key(spec.group) in exps:
            return spec.with_exponent(exps[_group_key(spec.group)])
        if name is not None and _param_key(name) in exps:
            return spec.with_exponent(exps[_param_key(name)])
        return spec

    return QuantPlan(
        target=plan.target,
        bits=plan.bits,
        node_types=dict(plan.node_types),
        tensors={k: apply(k, v) for k, v in plan.tensors.items()},
        requant={k: apply(None, v) for k, v in plan.requant.items()},
        fused=dict(plan.fused),
        calib_algorithm=plan.calib_algorithm,
    )


__all__ = ["TrainableFakeQuant", "channel_view", "plan_with_exponents", "fake_quant_ste", "round_ste"]
