"""Blockwise reconstruction: learned weight rounding per block (AdaRound, Nagel et al. 2020), with
ESP-PPQ's ``blockwise_reconstruction_setting`` (esp_ppq_2026.md §1.3; ESP-PPQ 1.3.12
``quantization/optim/legacy.py`` ``AdaroundPass``).

* Blocks, cached block inputs and roll-back are :mod:`espq.quant.finetune.blocks`' (as TQT).
* Per block, every quantized parameter with its own exponent (Conv/Gemm/MatMul weights, constant
  operands) of the block's nodes is rounded as ``clamp(floor(W · 2^-e) + h(V)) · 2^e`` with the rectified
  sigmoid ``h(V) = clamp(1.2 · sigmoid(V) − 0.1, 0, 1)``; V starts where ``h(V)`` equals the fractional
  part (the float weight), and Adam (``lr``, ``steps``) trains V on the block-output MSE against the float
  model plus ``gamma · 0.01 · Σ(1 − |2h(V) − 1|^β)``: zero for the first 20 % of the steps, then β
  annealed from 20 to 2 (cosine), which drives every h(V) to 0 or 1. The float weights and the exponents
  stay fixed; biases keep their derived exponent. With ``is_scale_trainable`` the α = log2(scale) of the
  block's activation groups are trained as well (TQT's straight-through exponents); ESP-PPQ's own
  scale training is off on power-of-two targets (its LSQ delegator refuses POWER_OF_2 scales).
* After training the rounding is hard: ``floor(W · 2^-e) + [V ≥ 0]``, clamped, written back into the
  weights (each weight is then exactly a code times ``2^e``: the exporter's rounding keeps it). A block
  whose loss did not drop is rolled back to nearest rounding of its float weights.
* Differences from ESP-PPQ 1.3.12: its training loop passes the loop variable of the block outputs (0
  for a single-output block) instead of the step to the regulariser, so its β annealing never starts and
  its rounding is decided by V's sign after MSE-only training; espq anneals by step as AdaRound
  describes. Its weight-scale pre-tuning (``tune_block_weight_scale``) trains no scale on power-of-two
  targets either, so espq does not run it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir.spec import OBSERVED, QuantPlan
from espq.quant.finetune.blocks import (
    BLOCK_INPUTS,
    BlockResult,
    collecting_device,
    fit_block,
    iterate_blocks,
    report_block,
    split_blocks,
)
from espq.quant.finetune.tqt import TQTResult, apply_trained
from espq.sim.trainable import TrainableFakeQuant, channel_view
from espq.targets import Target

ZETA, GAMMA_H = 1.1, -0.1  # AdaRound's stretch of the rectified sigmoid
REG_SCALE = 0.01  # ESP-PPQ's AdaroundRegTerm alpha (times the setting's gamma)
WARM_UP = 0.2  # fraction of the steps without the rounding regulariser
BETA = (20.0, 2.0)  # the regulariser's exponent, annealed from the first to the second


@dataclass
class ReconstructionOptions:
    """ESP-PPQ's ``BlockwiseReconstructionSetting`` fields with its defaults, plus espq's
    ``block_inputs`` ("quantized" | "float", as TQT)."""

    interested_layers: Sequence[str] = ()
    is_scale_trainable: bool = False
    lr: float = 1e-3
    steps: int = 5000
    gamma: float = 1.0
    collecting_device: str = "cuda"
    block_size: int = 4
    block_inputs: str = "quantized"

    def validate(self) -> None:
        """Raise ConfigError for values reconstruction cannot run with."""
        if self.steps < 0 or self.block_size < 1 or self.lr <= 0 or self.gamma < 0:
            raise ConfigError(
                "blockwise reconstruction needs steps >= 0, block_size >= 1, lr > 0 and gamma >= 0 "
                f"(got steps={self.steps}, block_size={self.block_size}, lr={self.lr}, gamma={self.gamma})"
            )
        if self.block_inputs not in BLOCK_INPUTS:
            raise ConfigError(f"block_inputs must be one of {BLOCK_INPUTS}, got {self.block_inputs!r}")
        if self.collecting_device not in ("cpu", "cuda"):
            raise ConfigError(f"collecting_device must be 'cpu' or 'cuda', got {self.collecting_device!r}")


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """AdaRound's h(V) = clamp((ζ − γ) · sigmoid(V) + γ, 0, 1)."""
    return torch.clamp((ZETA - GAMMA_H) * torch.sigmoid(v) + GAMMA_H, 0.0, 1.0)


def initial_v(fraction: torch.Tensor) -> torch.Tensor:
    """The V with h(V) = ``fraction`` (in [0, 1)): −log((ζ − γ) / (fraction − γ) − 1)."""
    return -torch.log((ZETA - GAMMA_H) / (fraction - GAMMA_H) - 1.0)


def beta_at(step: int, steps: int) -> float:
    """The regulariser's exponent at ``step``: cosine from 20 to 2 after the warm-up (ESP-PPQ's
    ``TimeDecay``)."""
    start = WARM_UP * steps
    rel = (step - start) / max(steps - start, 1e-12)
    return BETA[1] + 0.5 * (BETA[0] - BETA[1]) * (1.0 + math.cos(rel * math.pi))


def rounding_regulariser(vs: Sequence[torch.Tensor], step: int, steps: int) -> torch.Tensor | float:
    """Σ(1 − |2h(V) − 1|^β) over ``vs`` (0 during the warm-up), times :data:`REG_SCALE`."""
    if step < WARM_UP * steps:
        return 0.0
    beta = beta_at(step, steps)
    return REG_SCALE * sum((1.0 - (2.0 * rectified_sigmoid(v) - 1.0).abs().pow(beta)).sum() for v in vs)


def reconstruct(
    graph: Graph,
    plan: QuantPlan,
    target: Target,
    batches: Sequence[dict[str, np.ndarray]],
    float_graph: Graph | None = None,
    options: ReconstructionOptions | None = None,
    int16_lut_step: int = 32,
    progress: bool = False,
) -> TQTResult:
    """Learned rounding of ``graph``'s weights for ``plan``, block by block (module docstring); inputs are
    not modified. The result's graph holds the rounded weights (on their exponents' grids). Nothing is
    random (V starts from the weights' fractional parts), so a re-run gives the same weights."""
    opts = options or ReconstructionOptions()
    opts.validate()
    if not batches:
        raise ConfigError("blockwise reconstruction needs calibration batches (got none)")
    t0 = time.perf_counter()
    device = collecting_device(opts.collecting_device, "blockwise reconstruction")
    float_graph = graph if float_graph is None else float_graph
    module = TrainableFakeQuant(graph, plan, target, int16_lut_step=int16_lut_step).to(device)
    module.requires_grad_(False)
    feeds = [{k: torch.as_tensor(np.asarray(v)).float().to(device) for k, v in b.items()} for b in batches]
    interested = set(opts.interested_layers)
    done: set[str] = set()
    results: list[BlockResult] = []
    blocks = iterate_blocks(module, float_graph, feeds, opts.block_size, opts.block_inputs)
    total = len(split_blocks(module, opts.block_size))
    bar = tqdm(blocks, total=total, desc="reconstruction", unit="block", disable=None if progress else True)
    for block in bar:
        keys, weights = module.keys_of_nodes(block.start, block.stop)
        rounded = [w for w in weights if _own_exponent(module, w)]
        keys = [k for k in keys if k.startswith("g:") and k not in done] if opts.is_scale_trainable else []
        if (not interested or interested & set(block.ops)) and opts.steps > 0 and rounded:
            res = _reconstruct_block(module, block, rounded, keys, opts)
            results.append(res)
            report_block("reconstruction", block, res, progress)
        done.update(module.keys_of_nodes(block.start, block.stop)[0])
    bar.close()
    new_graph, new_plan = apply_trained(graph, plan, module)
    return TQTResult(new_graph, new_plan, results, time.perf_counter() - t0)


def _own_exponent(module: TrainableFakeQuant, name: str) -> bool:
    spec = module.plan.tensors[name]
    return spec.source == OBSERVED and spec.group is None and spec.exponent is not None


def _reconstruct_block(
    module: TrainableFakeQuant, block, names: list[str], keys: list[str], opts: ReconstructionOptions
) -> BlockResult:
    weights = [module.weight(n) for n in names]
    alphas = [module.alpha(k) for k in keys]
    scaled, vs = [], []
    for name, w in zip(names, weights):
        spec = module.plan.tensors[name]
        x = w.detach().double()
        if spec.per_channel and x.ndim == 0:
            x = x.reshape(1)
        e = module.exponents()[f"w:{name}"]
        e_t = torch.tensor(list(e) if isinstance(e, tuple) else e, dtype=torch.float64, device=x.device)
        scale = torch.exp2(channel_view(e_t, spec, x.ndim))
        x = x / scale
        scaled.append((x, scale, spec))
        vs.append(torch.nn.Parameter(initial_v((x - torch.floor(x)).float())))

    def begin() -> None:
        for name, v in zip(names, vs):
            module.parameter_rounding[name] = lambda x, v=v: torch.floor(x) + rectified_sigmoid(v).double()

    def finish() -> None:
        module.parameter_rounding.clear()
        for w, v, (x, scale, spec) in zip(weights, vs, scaled):
            code = torch.clamp(torch.floor(x) + (v >= 0).double(), spec.qmin, spec.qmax)
            w.copy_((code * scale).reshape(w.shape).to(w.dtype))
        for a in alphas:
            a.copy_(torch.round(a))

    def extra(step: int) -> torch.Tensor | float:
        return opts.gamma * rounding_regulariser(vs, step, opts.steps) if opts.gamma else 0.0

    try:
        return fit_block(
            module, block, vs + alphas, opts.steps, opts.lr, extra, finish, weights + alphas, begin
        )
    finally:
        module.parameter_rounding.clear()


__all__ = [
    "ReconstructionOptions",
    "beta_at",
    "initial_v",
    "reconstruct",
    "rectified_sigmoid",
    "rounding_regulariser",
]
