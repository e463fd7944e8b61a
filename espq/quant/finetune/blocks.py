"""Block machinery shared by the block-wise fine-tuning algorithms (TQT, blockwise reconstruction, LSQ,
block bias correction).

* :func:`split_blocks` cuts the trainable module's graph into blocks of at most ``block_size`` quantized
  computing ops in node order (a requantize node stays with its consumer), as ESP-PPQ's
  ``split_graph_into_blocks`` bounds its blocks by computing ops.
* :func:`iterate_blocks` caches every block's inputs once: the float model's tensors (the targets) and
  the quantized model's tensors advance one block at a time, so no full-graph forward is repeated. With
  ``block_inputs="quantized"`` (default) a block is fed the outputs of the already fine-tuned quantized
  upstream (ESP-PPQ's ``collect`` does the same); ``"float"`` feeds it the float upstream, rounded to the
  block inputs' specs.
* :func:`fit_block` is the per-block Adam loop on the block-output MSE with roll-back: the block's loss on
  all cached batches (the exact forward) before and after; when it did not drop, the given state is
  restored.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from espq.errors import ConfigError
from espq.ir import Graph
from espq.ir.op_facts import COMPUTING_OPS
from espq.ir.spec import F32, TensorSpec
from espq.sim.fakequant import FAKEQUANT_OP
from espq.sim.float.executor import run_segment
from espq.sim.trainable import TrainableFakeQuant, fake_quant_ste

#: the computing ops the block algorithms train and whose count bounds a block (recurrent gates keep
#: their fixed exponents)
TQT_OPS = COMPUTING_OPS - {"LSTM", "GRU"}
BLOCK_INPUTS = ("quantized", "float")


@dataclass
class BlockResult:
    """One block: its computing ops, the MSE before and after training, and whether it was kept."""

    ops: list[str]
    loss_before: float
    loss_after: float
    kept: bool


@dataclass
class Block:
    """Nodes ``start`` .. ``stop - 1`` of the module's graph, their quantized computing ops, the tensors
    live after them (``outputs``), the same node range ``f_start`` .. ``f_stop - 1`` of the float graph
    and, per calibration batch, the cached quantized inputs and float targets."""

    index: int
    count: int
    start: int
    stop: int
    ops: list[str]
    outputs: list[str]
    q_in: list[dict[str, torch.Tensor]]
    f_out: list[dict[str, torch.Tensor]]
    f_start: int = 0
    f_stop: int = 0


def check_device(device: str) -> torch.device:
    """``collecting_device`` as a torch device ("cpu" or "cuda"; ConfigError for anything else)."""
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"collecting_device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("collecting_device='cuda' but torch sees no CUDA device; use 'cpu'")
    return torch.device(device)


def collecting_device(device: str, what: str) -> torch.device:
    """Like :func:`check_device`, but ``"cuda"`` without a CUDA device (ESP-PPQ's default for
    reconstruction and LSQ) falls back to the CPU with a warning."""
    if device == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"{what}: collecting_device='cuda' but torch sees no CUDA device; computing on the CPU",
            stacklevel=3,
        )
        return torch.device("cpu")
    return check_device(device)


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


def block_mse(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """Sum over ``names`` of the mean squared difference (ESP-PPQ's block loss)."""
    return sum(torch.mean((got[n].float() - want[n].float()) ** 2) for n in names)


def block_loss(module: TrainableFakeQuant, block: Block) -> float:
    """The block's loss on all cached batches with the exact (no-gradient) forward."""
    with torch.no_grad():
        return float(
            sum(
                block_mse(module.run_segment(e, block.start, block.stop, block.outputs), t, block.outputs)
                for e, t in zip(block.q_in, block.f_out)
            )
        )


def iterate_blocks(
    module: TrainableFakeQuant,
    float_graph: Graph,
    feeds: Sequence[dict[str, torch.Tensor]],
    block_size: int,
    block_inputs: str = "quantized",
) -> Iterator[Block]:
    """The blocks of ``module`` with their cached inputs/targets; the quantized upstream advances past a
    block after the caller is done with it (so it sees the block's trained state)."""
    device = feeds[0][next(iter(feeds[0]))].device if feeds and feeds[0] else torch.device("cpu")
    with torch.no_grad():
        q_env = [module.quantized_feeds(f) for f in feeds]
    f_env = [dict(f) for f in feeds]
    f_index = {n.name: i for i, n in enumerate(float_graph.nodes)}
    nodes = module.graph.nodes
    ranges = split_blocks(module, block_size)
    for index, (start, stop) in enumerate(ranges):
        ops = [
            n.name
            for n in nodes[start:stop]
            if n.op_type in TQT_OPS and module.plan.node_types.get(n.name, F32) != F32
        ]
        names = _block_outputs(module, start, stop)
        f_start = f_index[next(n.name for n in nodes[start:] if n.op_type != FAKEQUANT_OP)]
        f_stop = (
            len(float_graph.nodes)
            if stop == len(nodes)
            else f_index[next(n.name for n in nodes[stop:] if n.op_type != FAKEQUANT_OP)]
        )
        with torch.no_grad():
            f_next = [run_segment(float_graph, e, f_start, f_stop, keep=names, device=device) for e in f_env]
        q_in = [_round_live(module, e) for e in f_env] if block_inputs == "float" else q_env
        yield Block(index, len(ranges), start, stop, ops, names, q_in, f_next, f_start, f_stop)
        if block_inputs == "quantized":
            with torch.no_grad():
                q_env = [module.run_segment(e, start, stop) for e in q_in]
        f_env = f_next


def _round_live(module: TrainableFakeQuant, env: dict) -> dict:
    """Float tensors rounded to the specs the quantized model gives them (graph inputs: their spec)."""
    rounded: dict[str, TensorSpec] = module._current_sim().rounded_outputs
    out = {}
    for name, t in env.items():
        spec = rounded.get(name) or module.plan.tensors.get(name)
        if spec is not None and spec.exponent is not None and t.is_floating_point():
            t = fake_quant_ste(t.float(), module._spec_exponent(spec), spec, module._half_even)
        out[name] = t
    return out


def fit_block(
    module: TrainableFakeQuant,
    block: Block,
    trainable: list[torch.Tensor],
    steps: int,
    lr: float,
    extra_loss: Callable[[int], torch.Tensor | float] | None = None,
    finish: Callable[[], None] | None = None,
    state: list[torch.Tensor] | None = None,
    begin: Callable[[], None] | None = None,
) -> BlockResult:
    """Adam (``lr``) on ``trainable`` for ``steps`` steps (one cached batch per step, in turn) on the block
    MSE plus ``extra_loss(step)``; ``begin()`` runs after the loss before training is measured (e.g. to
    switch learned rounding on), ``finish()`` after training (no gradients: e.g. round α, harden the
    rounding). If the block loss did not drop, ``state`` (default ``trainable``) is restored to its values
    before."""
    state = trainable if state is None else state
    snapshot = [p.detach().clone() for p in state]
    before = block_loss(module, block)
    if begin is not None:
        begin()
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=lr)
    for step in range(steps):
        k = step % len(block.q_in)
        optimizer.zero_grad(set_to_none=True)
        out = module.run_segment(block.q_in[k], block.start, block.stop, block.outputs)
        loss = block_mse(out, block.f_out[k], block.outputs)
        if extra_loss is not None:
            loss = loss + extra_loss(step)
        loss.backward()
        optimizer.step()
    for p in trainable:
        p.requires_grad_(False)
    if finish is not None:
        with torch.no_grad():
            finish()
    after = block_loss(module, block)
    kept = after < before
    if not kept:
        with torch.no_grad():
            for p, s in zip(state, snapshot):
                p.copy_(s)
    return BlockResult(list(block.ops), before, after, kept)


def report_block(desc: str, block: Block, result: BlockResult, progress: bool) -> None:
    """One progress line per trained block: its ops, loss before/after, rolled back or kept."""
    if not progress:
        return
    ops = ", ".join(result.ops[:3]) + (", ..." if len(result.ops) > 3 else "")
    verdict = "kept" if result.kept else "rolled back"
    tqdm.write(
        f"{desc} block {block.index + 1}/{block.count} [{ops}]: mse {result.loss_before:.4g} -> "
        f"{result.loss_after:.4g} ({verdict})",
        file=sys.stderr,
    )


__all__ = [
    "BLOCK_INPUTS",
    "Block",
    "BlockResult",
    "TQT_OPS",
    "block_loss",
    "block_mse",
    "check_device",
    "collecting_device",
    "fit_block",
    "iterate_blocks",
    "report_block",
    "split_blocks",
]
