"""TQT (trained quantization thresholds) per block, with ESP-PPQ's settings (esp_ppq_2026.md §1.1).

* The graph is cut into blocks of at most ``block_size`` computing ops (quantized Conv/ConvTranspose/Gemm/
  MatMul) in node order; a requantize step belongs to the block of its consumer.
* Per block, Adam (``lr``, ``steps``; one calibration batch per step, in turn) minimises the MSE between
  the float model's block outputs and the fake-quant block outputs (no labels), training the float
  weights of the block's quantized parameters and, with ``is_scale_trainable``, α = log2(scale) of every
  tensor the block rounds (:class:`espq.sim.trainable.TrainableFakeQuant`: integer exponents in the
  forward, straight-through gradients, the target's rounding, saturation and bias widths). ``gamma``
  adds ``gamma · mean((W_q − W)²)`` per weight, ``int_lambda`` adds ``int_lambda · mean((α − round α)²)``.
  An activation group shared with an earlier block stays as that block left it.
* A block whose loss (all calibration batches, the exact forward) did not drop is rolled back; otherwise
  α is written back as round(α). The plan's dependent specs (biases, Clip bounds, Pad values) are
  re-derived by :func:`espq.quant.calibrate.resolve_dependent_specs`, so export and simulator agree.
* Block inputs are cached once per block: the float model's tensors (targets) and the quantized model's
  tensors advance one block at a time, so no full-graph forward is repeated. ``block_inputs="quantized"``
  (default) feeds each block the outputs of the already fine-tuned quantized upstream; ``"float"`` feeds
  it the float upstream, rounded to the block inputs' specs. Measured on ResNet-20 / esp32s3 int8 (32 × 32
  calibration images, 20 steps per block, lr 1e-5, 500 val images; PTQ NSR 1.51e-2): quantized upstream
  1.14e-2, float upstream 1.24e-2 (its per-block losses are lower, but each block does not learn to undo
  the upstream error), so "quantized" is the default.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir.op_facts import COMPUTING_OPS
from espq.ir.spec import F32, QuantPlan, TensorSpec
from espq.quant.calibrate import resolve_dependent_specs
from espq.sim.fakequant import FAKEQUANT_OP
from espq.sim.float.executor import run_segment
from espq.sim.trainable import TrainableFakeQuant, fake_quant_ste, plan_with_exponents
from espq.targets import Target

#: the computing ops TQT trains and whose count bounds a block (recurrent gates keep their fixed exponents)
TQT_OPS = COMPUTING_OPS - {"LSTM", "GRU"}
BLOCK_INPUTS = ("quantized", "float")


@dataclass
class TQTOptions:
    """ESP-PPQ's ``TQTSetting`` fields with its defaults, plus espq's ``block_inputs``."""

    interested_layers: Sequence[str] = ()
    steps: int = 500
    lr: float = 1e-5
    block_size: int = 4
    is_scale_trainable: bool = True
    gamma: float = 0.0
    int_lambda: float = 0.0
    collecting_device: str = "cpu"
    block_inputs: str = "quantized"

    def validate(self) -> None:
        """Raise ConfigError for values TQT cannot run with."""
        if self.steps < 0 or self.block_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"TQT needs steps >= 0, block_size >= 1 and lr > 0 (got steps={self.steps}, "
                f"block_size={self.block_size}, lr={self.lr})"
            )
        if self.block_inputs not in BLOCK_INPUTS:
            raise ConfigError(f"TQT block_inputs must be one of {BLOCK_INPUTS}, got {self.block_inputs!r}")
        if self.collecting_device not in ("cpu", "cuda"):
            raise ConfigError(f"collecting_device must be 'cpu' or 'cuda', got {self.collecting_device!r}")
        if self.collecting_device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("collecting_device='cuda' but torch sees no CUDA device; use 'cpu'")


@dataclass
class BlockResult:
    """One block: its computing ops, the MSE before and after training, and whether it was kept."""

    ops: list[str]
    loss_before: float
    loss_after: float
    kept: bool


@dataclass
class TQTResult:
    """The fine-tuned graph (trained float weights) and plan, and what happened per block."""

    graph: Graph
    plan: QuantPlan
    blocks: list[BlockResult] = field(default_factory=list)
    seconds: float = 0.0


def split_blocks(module: TrainableFakeQuant, block_size: int) -> list[tuple[int, int]]:
    """Node ranges ``[start, stop)`` of ``module.graph`` with at most ``block_size`` quantized computing ops
    each; a requantize node stays with its consumer."""
    nodes = module.graph.nodes
    types = module.plan.node_types
    cuts = [0]
    count = 0
    for i, node in enumerate(nodes):
        if node.op_type in TQT_OPS and types.get(node.name, F32) != F32:
            if count == block_size:
                cut = i
                while cut > cuts[-1] and nodes[cut - 1].op_type == FAKEQUANT_OP:
                    cut -= 1
                if cut > cuts[-1]:
                    cuts.append(cut)
                    count = 0
            count += 1
    return list(zip(cuts, [*cuts[1:], len(nodes)]))


def _block_outputs(module: TrainableFakeQuant, start: int, stop: int) -> list[str]:
    later = {n for node in module.graph.nodes[stop:] for n in node.inputs if n}
    out = []
    for node in module.graph.nodes[start:stop]:
        for name in node.outputs:
            if name and (name in later or name in module.graph.outputs):
                out.append(name)
    return out


def _mse(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return sum(torch.mean((got[n].float() - want[n].float()) ** 2) for n in names)


def tqt_optimize(
    graph: Graph,
    plan: QuantPlan,
    target: Target,
    batches: Sequence[dict[str, np.ndarray]],
    float_graph: Graph | None = None,
    options: TQTOptions | None = None,
    int16_lut_step: int = 32,
    progress: bool = False,
) -> TQTResult:
    """Fine-tune ``graph`` + ``plan`` block by block (module docstring); inputs are not modified.

    ``batches``: calibration feeds (input name -> array), one Adam step per batch in turn; ``float_graph``:
    the float reference (default ``graph``).
    """
    opts = options or TQTOptions()
    opts.validate()
    if not batches:
        raise ConfigError("TQT needs calibration batches (got none)")
    t0 = time.perf_counter()
    device = torch.device(opts.collecting_device)
    float_graph = graph if float_graph is None else float_graph
    module = TrainableFakeQuant(
        graph, plan, target, int16_lut_step=int16_lut_step, train_exponents=opts.is_scale_trainable
    ).to(device)
    module.requires_grad_(False)
    feeds = [{k: torch.as_tensor(np.asarray(v)).float().to(device) for k, v in b.items()} for b in batches]
    with torch.no_grad():
        q_env = [module.quantized_feeds(f) for f in feeds]
    f_env = [dict(f) for f in feeds]
    f_index = {n.name: i for i, n in enumerate(float_graph.nodes)}
    rounded = module._current_sim().rounded_outputs
    interested = set(opts.interested_layers)
    done: set[str] = set()  # α keys decided by an earlier block
    results: list[BlockResult] = []
    blocks = split_blocks(module, opts.block_size)
    bar = tqdm(blocks, desc="TQT", unit="block", disable=None if progress else True, leave=False)
    for start, stop in bar:
        ops = [
            n.name
            for n in module.graph.nodes[start:stop]
            if n.op_type in TQT_OPS and plan.node_types.get(n.name, F32) != F32
        ]
        names = _block_outputs(module, start, stop)
        f_start = f_index[next(n.name for n in module.graph.nodes[start:] if n.op_type != FAKEQUANT_OP)]
        f_stop = (
            len(float_graph.nodes)
            if stop == len(module.graph.nodes)
            else f_index[next(n.name for n in module.graph.nodes[stop:] if n.op_type != FAKEQUANT_OP)]
        )
        with torch.no_grad():
            f_next = [run_segment(float_graph, e, f_start, f_stop, keep=names, device=device) for e in f_env]
        if opts.block_inputs == "float":
            q_in = [_round_live(module, e, rounded) for e in f_env]
        else:
            q_in = q_env
        keys, weights = module.keys_of_nodes(start, stop)
        keys = [k for k in keys if k not in done] if opts.is_scale_trainable else []
        train = (not interested or interested & set(ops)) and opts.steps > 0 and (keys or weights)
        if train:
            res = _train_block(module, q_in, f_next, names, start, stop, keys, weights, opts)
            results.append(BlockResult(ops, *res))
            bar.set_postfix_str(f"mse {res[0]:.3g} -> {res[1]:.3g}{'' if res[2] else ' (rolled back)'}")
        done.update(module.keys_of_nodes(start, stop)[0])
        if opts.block_inputs == "quantized":
            with torch.no_grad():
                q_env = [module.run_segment(e, start, stop) for e in q_in]
        f_env = f_next
    bar.close()
    new_graph, new_plan = apply_trained(graph, plan, module)
    return TQTResult(new_graph, new_plan, results, time.perf_counter() - t0)


def _round_live(module: TrainableFakeQuant, env: dict, rounded: dict[str, TensorSpec]) -> dict:
    """Float tensors rounded to the specs the quantized model gives them (graph inputs: their spec)."""
    out = {}
    for name, t in env.items():
        spec = rounded.get(name) or module.plan.tensors.get(name)
        if spec is not None and spec.exponent is not None and t.is_floating_point():
            t = fake_quant_ste(t.float(), module._spec_exponent(spec), spec, module._half_even)
        out[name] = t
    return out


def _train_block(
    module: TrainableFakeQuant,
    q_in: list[dict],
    f_out: list[dict],
    names: list[str],
    start: int,
    stop: int,
    keys: list[str],
    weights: list[str],
    opts: TQTOptions,
) -> tuple[float, float, bool]:
    alphas = [module.alpha(k) for k in keys]
    params = [module.weight(w) for w in weights]
    snapshot = [p.detach().clone() for p in params + alphas]

    def loss_all() -> float:
        with torch.no_grad():
            return float(
                sum(_mse(module.run_segment(e, start, stop, names), t, names) for e, t in zip(q_in, f_out))
            )

    before = loss_all()
    for p in params + alphas:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params + alphas, lr=opts.lr)
    originals = [p.detach().clone() for p in params]
    for step in range(opts.steps):
        k = step % len(q_in)
        optimizer.zero_grad(set_to_none=True)
        loss = _mse(module.run_segment(q_in[k], start, stop, names), f_out[k], names)
        if opts.gamma:
            for name, w0 in zip(weights, originals):
                loss = loss + opts.gamma * torch.mean((module._parameter_now(name, w0.device) - w0) ** 2)
        if opts.int_lambda:
            for a in alphas:
                loss = loss + opts.int_lambda * torch.mean((a - torch.round(a).detach()) ** 2)
        loss.backward()
        optimizer.step()
    for p in params + alphas:
        p.requires_grad_(False)
    with torch.no_grad():
        for a in alphas:
            a.copy_(torch.round(a))
    after = loss_all()
    kept = after < before
    if not kept:
        with torch.no_grad():
            for p, s in zip(params + alphas, snapshot):
                p.copy_(s)
    return before, after, kept


def apply_trained(graph: Graph, plan: QuantPlan, module: TrainableFakeQuant) -> tuple[Graph, QuantPlan]:
    """A copy of ``graph`` with ``module``'s trained float weights and of ``plan`` with its integer
    exponents (dependent specs re-derived); ``graph``/``plan`` are not changed."""
    unknown = [n for n in module.weight_names if n not in graph.initializers]
    if unknown or set(module.plan.tensors) != set(plan.tensors):
        raise ConfigError(
            f"the trained module does not belong to this model (weights {unknown[:3]} not in graph "
            f"'{graph.name}', or other tensors); build it with this model's QuantizedModel.trainable()"
        )
    new_plan = plan_with_exponents(plan, module.exponents())
    new_graph = graph.copy()
    for name, value in module.float_weights().items():
        new_graph.initializers[name] = value.astype(graph.initializers[name].dtype)
    resolve_dependent_specs(new_plan, new_graph)
    return new_graph, new_plan


__all__ = ["BlockResult", "TQTOptions", "TQTResult", "apply_trained", "split_blocks", "tqt_optimize"]
