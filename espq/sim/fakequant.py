"""Fake-quant simulator: the float graph with every quantized tensor rounded the way the chip rounds it.

* Parameters are quantized once (weights per channel where the plan says so, biases with the derived
  exponent and the target's bias width, Clip bounds / Pad values with their input's exponent).
* Every output of a quantized node is rounded with the target's rounding mode and saturated
  (``value = clamp(round(x · 2^-e)) · 2^e``); graph inputs likewise.
* A consumer that needs another exponent or width than its input tensor has (requantize boundary)
  sees the input rounded again to that spec (an inserted ``EspqFakeQuant`` node).
* Softmax/LogSoftmax outputs stay float (esp_dl_facts §4.8); comparisons give bools.
* GRU/LSTM run the chip's integer gate arithmetic on the codes (:mod:`espq.sim.fakequant_rnn`).
* int8 activations evaluate the float function on the dequantized input and round the result, which
  is exactly what the chip's 256-entry table holds (the exporter builds tables with the same kernels).
* AveragePool/GlobalAveragePool use the chip's formula: integer window sum times the float32 scale
  ``2^e_in · (1/area) · 2^-e_out`` with area = kH·kW (count-including-padding, §4.7).
* int16 Conv/Gemm/MatMul accumulate in float64 (exact below 2^53); int8 ones in float32, exact as long
  as partial sums stay below 2^24 integer units (always, unless the output saturates anyway).

Kernels: a simulator runs the float registry's kernels (:data:`espq.sim.float.registry.KERNELS`) except
where it has its own (chip formulas, requantize nodes, int16 tables). :meth:`FakeQuantSim.kernel` gives
the kernel it runs for an op type, :attr:`FakeQuantSim.kernels` its own ones, and
:meth:`FakeQuantSim.register_kernel` replaces one for this simulator (e.g. to measure or correct a
layer's output, as bias correction does); :meth:`FakeQuantSim.round_output` is the rounding applied to
every node output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from espq.errors import UnsupportedOpError
from espq.ir import Graph, Node
from espq.ir import quant_rules as rules
from espq.ir.spec import F32, S16, QuantPlan, TensorSpec
from espq.sim.fakequant_rnn import rnn_kernel
from espq.sim.float.executor import load_kernels, run_graph, run_segment
from espq.sim.float.registry import KERNELS, KernelFn
from espq.sim.lut import LUT16_OPS, build_table, int16_lut_kernel
from espq.targets import Rounding, Target, get_target
from espq.targets.rounding import dequantize, quantize

HALF_EVEN = Rounding.HALF_EVEN.value

FAKEQUANT_OP = "EspqFakeQuant"
WEIGHTED_OPS = tuple(rules.WEIGHTED_OPS)


def fake_quant(x: torch.Tensor, spec: TensorSpec, rounding: str) -> torch.Tensor:
    """Round ``x`` to ``spec``'s grid (target rounding, saturation); same dtype as ``x``.

    Computed in ``x``'s float dtype: scaling by powers of two is exact, and every representable
    8/16-bit code times a power of two is exact in float32.
    """
    if spec.exponent is None:
        return x
    if spec.per_channel:
        shape = [1] * x.ndim
        shape[spec.axis] = -1
        exp = torch.tensor(spec.exponent, dtype=x.dtype, device=x.device).reshape(shape)
        inv, scale = torch.exp2(-exp), torch.exp2(exp)
    else:
        inv, scale = 2.0 ** -int(spec.exponent), 2.0 ** int(spec.exponent)
    y = x * inv  # one new tensor (x may be a view of another tensor); the rest is in place
    if rounding == HALF_EVEN:
        y.round_()
    else:
        y.add_(0.5).floor_()
    return y.clamp_(spec.qmin, spec.qmax).mul_(scale)


def quantize_parameters(graph: Graph, plan: QuantPlan, target: Target) -> dict[str, np.ndarray]:
    """Float values of every quantized initializer after rounding to its spec (others unchanged)."""
    out: dict[str, np.ndarray] = {}
    rounding = rules.PARAMETER_ROUNDING
    for name, value in graph.initializers.items():
        spec = plan.tensors.get(name)
        if spec is None or spec.exponent is None or not np.issubdtype(value.dtype, np.floating):
            out[name] = value
            continue
        t = torch.as_tensor(np.asarray(value, dtype=np.float64))
        if spec.per_channel and t.ndim == 0:
            t = t.reshape(1)
        rounded = fake_quant(t, spec, rounding).numpy().reshape(value.shape)
        # 40/64-bit int16 biases need float64 to stay exact; everything else keeps its dtype
        out[name] = rounded if spec.bits > 32 else rounded.astype(value.dtype)
    return out


def _insert_requant_nodes(graph: Graph, plan: QuantPlan) -> Graph:
    g = graph.copy()
    for key in sorted(plan.requant):
        node_name, idx_s = key.rsplit(":", 1)
        node = g.node(node_name)
        idx = int(idx_s)
        src = node.inputs[idx]
        if not src or src in g.initializers:
            continue
        new = g.unique_name(f"{src}::requant::{node_name}:{idx}")
        fq = Node(g.unique_name(f"{node_name}::requant{idx}"), FAKEQUANT_OP, [src], [new], {"key": key})
        g.add_node(fq, g.nodes.index(node))
        node.inputs[idx] = new
        g.invalidate()
    return g


class FakeQuantSim:
    """Runs a quantized graph with fake quantization; see the module docstring."""

    def __init__(
        self, graph: Graph, plan: QuantPlan, target: Target | str | None = None, int16_lut_step: int = 32
    ):
        self.plan = plan
        self.int16_lut_step = int16_lut_step
        self.target = get_target(target or plan.target)
        self.rounding = self.target.rounding.value
        self.graph = _insert_requant_nodes(graph, plan)
        self.graph.initializers = quantize_parameters(self.graph, plan, self.target)
        self._kernels = self._make_kernels()
        self._use_int16_tables()
        self._rounded_outputs = self._outputs_to_round()

    def _outputs_to_round(self) -> dict[str, TensorSpec]:
        """Outputs of quantized nodes that need rounding: all with a spec, except pure data movement
        whose output spec equals its input's (rounding again would change nothing)."""
        out = {}
        for node in self.graph.nodes:
            if self.plan.node_types.get(node.name, F32) == F32 or node.op_type == FAKEQUANT_OP:
                continue
            for name in node.outputs:
                spec = self.plan.tensors.get(name)
                if spec is None:
                    continue
                if node.op_type in rules.PASSIVE_OPS and node.op_type not in rules.PASSIVE_VALUE_OPS:
                    src = self.plan.input_spec(node.name, 0, node.inputs[0])
                    if src is not None and (src.bits, src.exponent) == (spec.bits, spec.exponent):
                        continue
                out[name] = spec
        return out

    # ------------------------------------------------------------------ kernels
    def _make_kernels(self) -> dict:
        plan, rounding = self.plan, self.rounding

        def requant(node: Node, inputs: list) -> list:
            return [fake_quant(inputs[0], plan.requant[node.attrs["key"]], rounding)]

        def weighted(node: Node, inputs: list) -> list:
            base = KERNELS[node.op_type]
            if plan.node_types.get(node.name) != S16:
                return base(node, inputs)
            outs = base(node, [None if t is None else t.double() for t in inputs])
            return outs  # rounded in float64 by the hook, then cast back

        def avgpool(node: Node, inputs: list) -> list:
            return [self._chip_avgpool(node, inputs[0])]

        def prelu(node: Node, inputs: list) -> list:
            return [self._chip_prelu(node, inputs[0], inputs[1])]

        kernels = {
            FAKEQUANT_OP: requant,
            "AveragePool": avgpool,
            "GlobalAveragePool": avgpool,
            "PRelu": prelu,
        }
        for op in WEIGHTED_OPS:
            kernels[op] = weighted
        for op in rules.RNN_OPS:
            kernels[op] = rnn_kernel(plan, self.target)
        return kernels

    def _use_int16_tables(self) -> None:
        """int16 activations that the exporter turns into ``LUT`` nodes run as the chip runs them: the
        nearest entry of a (65536/step + 1)-entry table (esp_dl_facts §3.3), not the exact function."""
        if not self.int16_lut_step:
            return
        tables = {}
        for node in self.graph.nodes:
            if self.plan.node_types.get(node.name) != S16 or node.op_type not in LUT16_OPS:
                continue
            in_spec = self.plan.input_spec(node.name, 0, node.inputs[0])
            out_spec = self.plan.tensors.get(node.outputs[0])
            if in_spec is None or out_spec is None:
                continue
            e_in, e_out = int(in_spec.exponent), int(out_spec.exponent)
            table = build_table(
                node.op_type, node.attrs, [], e_in, e_out, 16, self.target, self.int16_lut_step
            )
            tables[node.name] = (table, e_in, e_out)
        for op in {self.graph.node(n).op_type for n in tables}:
            self.register_kernel(op, int16_lut_kernel(tables, self.target, self.kernel(op)))

    @property
    def rounded_outputs(self) -> dict:
        """The tensors this simulator rounds after their producer ran (tensor name -> its spec); a copy."""
        return dict(self._rounded_outputs)

    @property
    def kernels(self) -> dict[str, KernelFn]:
        """This simulator's own kernels (op type -> kernel), over the float registry's; a copy."""
        return dict(self._kernels)

    def kernel(self, op_type: str) -> KernelFn:
        """The kernel this simulator runs for ``op_type`` nodes: its own, else the float registry's."""
        if op_type in self._kernels:
            return self._kernels[op_type]
        load_kernels()
        if op_type not in KERNELS:
            raise UnsupportedOpError(f"no kernel for op type '{op_type}' in the fake-quant simulator")
        return KERNELS[op_type]

    def register_kernel(self, op_type: str, fn: KernelFn) -> KernelFn:
        """Run ``fn(node, inputs) -> outputs`` for every ``op_type`` node of this simulator from now on
        (outputs are still rounded by :meth:`round_output`); returns the kernel it replaces, so ``fn`` may
        wrap it."""
        previous = self.kernel(op_type)
        self._kernels[op_type] = fn
        return previous

    def _chip_avgpool(self, node: Node, x: torch.Tensor) -> torch.Tensor:
        in_spec = self.plan.input_spec(node.name, 0, node.inputs[0])
        out_spec = self.plan.spec(node.outputs[0])
        if node.name not in self.plan.node_types or self.plan.node_types[node.name] == F32 or in_spec is None:
            return KERNELS[node.op_type](node, [x])[0]
        if node.op_type == "GlobalAveragePool":
            kernel = tuple(x.shape[2:])
            sum_node = Node(
                node.name, "AveragePool", node.inputs, node.outputs, {"kernel_shape": list(kernel)}
            )
        else:
            kernel = tuple(node.attrs["kernel_shape"])
            sum_node = Node(node.name, "AveragePool", node.inputs, node.outputs, dict(node.attrs))
            sum_node.attrs["count_include_pad"] = 1  # the chip divides by kH*kW everywhere (§4.7)
        area = int(np.prod(kernel))
        avg = KERNELS["AveragePool"](sum_node, [x.double()])[0]
        sums = torch.round(torch.ldexp(avg * area, torch.tensor(-int(in_spec.exponent), dtype=torch.float64)))
        e_out = int(out_spec.exponent)
        scale = np.float32(np.float32(2.0 ** int(in_spec.exponent)) * np.float32(1.0 / area))
        scale = np.float32(scale * np.float32(2.0**-e_out))
        y = sums.float() * torch.tensor(scale, dtype=torch.float32)
        q = quantize(y, 0, out_spec.bits, self.rounding)
        return dequantize(q, e_out).to(x.dtype)

    def _chip_prelu(self, node: Node, x: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
        """PRelu as the chip's module computes it (esp_dl_facts §4.6, C kernel ``prelu_11c``, which the
        integer runner follows for every family): negative inputs ``floor(x·α·2^-e_out)`` (an arithmetic
        right shift, not the target rounding); positives are rounded by the output hook as usual. An
        int8 node with a scalar slope becomes a table at export (rounded, the generic path). Whether
        the PIE (S3/P4 int8) PRelu kernels floor too is not settled by ESP-DL's source here; the floor
        is what the runner checks against Espressif's op tests (``bench/optests.py``)."""
        base = KERNELS["PRelu"]
        kind = self.plan.node_types.get(node.name, F32)
        out_spec = self.plan.tensors.get(node.outputs[0])
        lut = kind != S16 and slope.numel() == 1
        if kind == F32 or out_spec is None or out_spec.exponent is None or lut:
            return base(node, [x, slope])[0]
        prod = base(node, [x.double(), slope.double()])[0]  # exact: |x·α| < 2^31 units
        e_out = int(out_spec.exponent)
        neg = torch.ldexp(
            torch.floor(torch.ldexp(prod, torch.tensor(-e_out, dtype=torch.float64))),
            torch.tensor(e_out, dtype=torch.float64),
        )
        return torch.where(x < 0, neg, x.double())

    # ------------------------------------------------------------------ running
    def round_output(self, node: Node, index: int, tensor: torch.Tensor) -> torch.Tensor:
        """Output ``index`` of ``node`` as the chip stores it (rounded to its spec where it has one;
        an executor hook, see :func:`espq.sim.float.executor.run_graph`)."""
        spec = self._rounded_outputs.get(node.outputs[index])
        if spec is None or not tensor.is_floating_point():
            return tensor.float() if tensor.dtype == torch.float64 else tensor
        return fake_quant(tensor, spec, self.rounding).float()

    def run_torch(
        self,
        feeds: Mapping[str, torch.Tensor],
        outputs: Sequence[str] | None = None,
        device: str = "cpu",
        grad: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Run on torch feeds (graph input name -> float tensor); returns the requested tensors.
        ``grad``: keep autograd on (:func:`espq.sim.float.executor.run_graph`; rounding has zero gradient
        here, :mod:`espq.sim.trainable` has the straight-through version)."""
        return run_graph(
            self.graph,
            self.quantized_feeds(feeds),
            None if outputs is None else list(outputs),
            device=device,
            hook=self.round_output,
            kernels=self._kernels,
            grad=grad,
        )

    def quantized_feeds(self, feeds: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The graph inputs rounded to their specs, as the first node sees them."""
        out = {}
        for name, value in feeds.items():
            spec = self.plan.tensors.get(name)
            out[name] = fake_quant(value.float(), spec, self.rounding) if spec else value
        return out

    def run_segment(
        self, env: Mapping[str, torch.Tensor], start: int, stop: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Nodes ``start`` .. ``stop - 1`` of :attr:`graph` from the live tensors ``env``
        (:func:`espq.sim.float.executor.run_segment`; begin with :meth:`quantized_feeds` at node 0)."""
        return run_segment(self.graph, env, start, stop, hook=self.round_output, kernels=self._kernels)
