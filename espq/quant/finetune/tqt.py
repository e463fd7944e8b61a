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
* Block splitting, the cached block inputs and the roll-back are :mod:`espq.quant.finetune.blocks`
  (shared with blockwise reconstruction and LSQ). ``block_inputs="quantized"`` (default) feeds each block
  the outputs of the already fine-tuned quantized upstream; ``"float"`` feeds it the float upstream,
  rounded to the block inputs' specs. Measured on ResNet-20 / esp32s3 int8 (32 × 32 calibration images,
  20 steps per block, lr 1e-5, 500 val images; PTQ NSR 1.51e-2): quantized upstream 1.14e-2, float
  upstream 1.24e-2 (its per-block losses are lower, but each block does not learn to undo the upstream
  error), so "quantized" is the default.
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
from espq.ir.spec import QuantPlan
from espq.quant.calibrate import resolve_dependent_specs
from espq.quant.finetune.blocks import (
    BLOCK_INPUTS,
    TQT_OPS,
    BlockResult,
    check_device,
    fit_block,
    iterate_blocks,
    report_block,
    split_blocks,
)
from espq.sim.trainable import TrainableFakeQuant, plan_with_exponents
from espq.targets import Target


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
        check_device(self.collecting_device)


@dataclass
class TQTResult:
    """The fine-tuned graph (trained float weights) and plan, and what happened per block."""

    graph: Graph
    plan: QuantPlan
    blocks: list[BlockResult] = field(default_factory=list)
    seconds: float = 0.0


def tqt_optimize(
    graph: Graph,
    plan: QuantPlan,
    target: Target,
    batches: Sequence[dict[str, np.ndarray]],
    float_graph: Graph | None = None,
    options: TQTOptions | None = None,
    int16_lut_step: int = 32,
    progress: bool = False,
    desc: str = "TQT",
) -> TQTResult:
    """Fine-tune ``graph`` + ``plan`` block by block (module docstring); inputs are not modified.

    ``batches``: calibration feeds (input name -> array), one Adam step per batch in turn; ``float_graph``:
    the float reference (default ``graph``); ``desc``: the name on the progress lines.
    """
    opts = options or TQTOptions()
    opts.validate()
    if not batches:
        raise ConfigError(f"{desc} needs calibration batches (got none)")
    t0 = time.perf_counter()
    device = check_device(opts.collecting_device)
    float_graph = graph if float_graph is None else float_graph
    module = TrainableFakeQuant(
        graph, plan, target, int16_lut_step=int16_lut_step, train_exponents=opts.is_scale_trainable
    ).to(device)
    module.requires_grad_(False)
    feeds = [{k: torch.as_tensor(np.asarray(v)).float().to(device) for k, v in b.items()} for b in batches]
    interested = set(opts.interested_layers)
    done: set[str] = set()  # α keys decided by an earlier block
    results: list[BlockResult] = []
    blocks = iterate_blocks(module, float_graph, feeds, opts.block_size, opts.block_inputs)
    bar = tqdm(blocks, total=len(split_blocks(module, opts.block_size)), desc=desc, unit="block",
               disable=None if progress else True, leave=False)  # fmt: skip
    for block in bar:
        keys, weights = module.keys_of_nodes(block.start, block.stop)
        keys = [k for k in keys if k not in done] if opts.is_scale_trainable else []
        if (not interested or interested & set(block.ops)) and opts.steps > 0 and (keys or weights):
            res = _train_block(module, block, keys, weights, opts)
            results.append(res)
            report_block(desc, block, res, progress)
        done.update(module.keys_of_nodes(block.start, block.stop)[0])
    bar.close()
    new_graph, new_plan = apply_trained(graph, plan, module)
    return TQTResult(new_graph, new_plan, results, time.perf_counter() - t0)


def _train_block(
    module: TrainableFakeQuant, block, keys: list[str], weights: list[str], opts: TQTOptions
) -> BlockResult:
    alphas = [module.alpha(k) for k in keys]
    params = [module.weight(w) for w in weights]
    originals = [p.detach().clone() for p in params]

    def extra(step: int) -> torch.Tensor | float:
        loss: torch.Tensor | float = 0.0
        if opts.gamma:
            for name, w0 in zip(weights, originals):
                loss = loss + opts.gamma * torch.mean((module._parameter_now(name, w0.device) - w0) ** 2)
        if opts.int_lambda:
            for a in alphas:
                loss = loss + opts.int_lambda * torch.mean((a - torch.round(a).detach()) ** 2)
        return loss

    def finish() -> None:
        for a in alphas:
            a.copy_(torch.round(a))

    return fit_block(module, block, params + alphas, opts.steps, opts.lr, extra, finish)


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


__all__ = [
    "TQT_OPS",
    "BlockResult",
    "TQTOptions",
    "TQTResult",
    "apply_trained",
    "split_blocks",
    "tqt_optimize",
]
