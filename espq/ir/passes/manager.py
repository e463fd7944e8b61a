"""Run the canonicalisation passes to a fixed point.

``CANONICAL_PASSES`` order and why:

1. ``constant_to_initializer`` — every later pass recognises constants as initializers only.
2. ``remove_identity`` — Identity/Dropout would hide producer→consumer patterns (Conv→Identity→BN).
3. ``fold_shape_ops`` then 4. ``fold_constants`` — Shape of static tensors, then whole constant
   chains (Shape→Gather→Concat→Reshape, weight transposes...), so fusions see constant operands.
   Folding evaluates one-node models at ``graph.opset``, so it is valid before and after step 6.
5. ``infer_shapes`` — shapes behind the folded chains become static (next round folds more).
6. ``normalize_attributes`` — old-opset forms become opset-18 input forms; it waits (all or
   nothing) until the ranks it needs are known, hence after 3–5.
6b. ``fuse_layernorm`` — decomposed LayerNorm chains (ReduceMean/Sub/Pow/.../Div) become one
   ``LayerNormalization``; after 6 so ReduceMean axes are in their opset-18 input form or attribute,
   before 7/8 so its trailing Mul/Add are not taken for something else.
6c. ``fuse_gelu``, ``fuse_rmsnorm``, ``fuse_lpnorm`` — decomposed GELU (erf and tanh forms), RMSNorm and
   L1/L2 normalisation become ``Gelu`` / ``RMSNormalization`` / ``LpNormalization``; after 6b, whose
   variance branch looks like an RMSNorm of ``x − mean``.
7. ``matmul_add_to_gemm`` — creates Gemm (with its bias Add) so the next passes can treat it
   like Conv.
8. ``fuse_add_to_bias`` — constant Add/Sub into Conv/ConvTranspose/Gemm bias; before BN folding so
   that Conv→Add→BN folds completely.
9. ``fold_batchnorm`` — BN into its producer; must run before 10, which would otherwise turn
   foldable BNs into extra convolutions.
10. ``batchnorm_to_conv`` — what BN is left becomes a depthwise 1×1 Conv.
11. ``fuse_swish`` — Sigmoid·Mul → Swish.
11a. ``fuse_prelu`` — Keras's Relu(x) + c·Relu(−x) (tf2onnx) → PRelu(x, −c); needs c folded (4) and
    x's rank (5).
11b. ``minmax_to_clip`` — Max/Min with a one-valued constant → Clip, Clip chains → one Clip; after
    fold_constants (the constant must be an initializer) and normalize_attributes (Clip inputs form).
11c. ``pool_ceil_to_pads`` — ceil-mode MaxPool → floor mode with larger end pads; needs shapes (5).
12. ``convtranspose_to_conv`` — after 8/9 so bias/BN fold into the ConvTranspose (group-aware)
    first; the cropping Slice this lowering may add would otherwise block those folds.
13. ``remove_dead_nodes`` — drop what the rewrites left unused.

The sequence is repeated until one full round makes no rewrite (at most ``max_rounds``), then
the graph is toposorted and pruned. Note: the result may contain ``InsertZeros`` and ``Swish``
(ESP-DL ops that onnxruntime does not know).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

from espq.ir.graph import Graph
from espq.ir.passes.batchnorm_to_conv import batchnorm_to_conv
from espq.ir.passes.constant_to_initializer import constant_to_initializer
from espq.ir.passes.convtranspose_to_conv import convtranspose_to_conv
from espq.ir.passes.fold_batchnorm import fold_batchnorm
from espq.ir.passes.fold_constants import fold_constants
from espq.ir.passes.fold_shape_ops import fold_shape_ops
from espq.ir.passes.fuse_add_to_bias import fuse_add_to_bias
from espq.ir.passes.fuse_gelu import fuse_gelu
from espq.ir.passes.fuse_layernorm import fuse_layernorm
from espq.ir.passes.fuse_lpnorm import fuse_lpnorm
from espq.ir.passes.fuse_prelu import fuse_prelu
from espq.ir.passes.fuse_rmsnorm import fuse_rmsnorm
from espq.ir.passes.fuse_swish import fuse_swish
from espq.ir.passes.infer_shapes import infer_shapes
from espq.ir.passes.matmul_add_to_gemm import matmul_add_to_gemm
from espq.ir.passes.minmax_to_clip import minmax_to_clip
from espq.ir.passes.normalize_attributes import TARGET_OPSET, normalize_attributes
from espq.ir.passes.pool_ceil_to_pads import pool_ceil_to_pads
from espq.ir.passes.remove_dead_nodes import remove_dead_nodes
from espq.ir.passes.remove_identity import remove_identity

logger = logging.getLogger(__name__)

Pass = Callable[[Graph], int]

CANONICAL_PASSES: tuple[Pass, ...] = (
    constant_to_initializer,
    remove_identity,
    fold_shape_ops,
    fold_constants,
    infer_shapes,
    normalize_attributes,
    fuse_layernorm,
    fuse_gelu,
    fuse_rmsnorm,
    fuse_lpnorm,
    matmul_add_to_gemm,
    fuse_add_to_bias,
    fold_batchnorm,
    batchnorm_to_conv,
    fuse_swish,
    fuse_prelu,
    minmax_to_clip,
    pool_ceil_to_pads,
    convtranspose_to_conv,
    remove_dead_nodes,
)


@dataclass
class PassReport:
    """What :func:`canonicalize` did: rewrites per pass, per round, and whether it converged."""

    rounds: list[dict[str, int]] = field(default_factory=list)
    converged: bool = False

    @property
    def totals(self) -> dict[str, int]:
        """Rewrites per pass name, summed over all rounds."""
        out: dict[str, int] = {}
        for r in self.rounds:
            for name, n in r.items():
                out[name] = out.get(name, 0) + n
        return out

    def __str__(self) -> str:
        fired = ", ".join(f"{k}={v}" for k, v in self.totals.items() if v) or "nothing"
        state = "converged" if self.converged else "did NOT converge"
        return f"canonicalize: {len(self.rounds)} round(s), {state}; rewrites: {fired}"


@overload
def canonicalize(
    graph: Graph, passes: Sequence[Pass] = ..., *, max_rounds: int = ..., report: Literal[False] = ...
) -> Graph: ...
@overload
def canonicalize(
    graph: Graph, passes: Sequence[Pass] = ..., *, max_rounds: int = ..., report: Literal[True]
) -> tuple[Graph, PassReport]: ...


def canonicalize(
    graph: Graph,
    passes: Sequence[Pass] = CANONICAL_PASSES,
    *,
    max_rounds: int = 8,
    report: bool = False,
) -> Graph | tuple[Graph, PassReport]:
    """Return a canonicalised copy of ``graph`` (the argument is not modified).

    ``passes`` run in order, repeatedly, until a full round rewrites nothing or ``max_rounds``
    rounds ran (a warning is logged then); the result is toposorted and pruned. With
    ``report=True`` returns ``(graph, PassReport)``.
    """
    g = graph.copy()
    rep = PassReport()
    for _ in range(max_rounds):
        counts = {}
        for p in passes:
            counts[p.__name__] = p(g)
        rep.rounds.append(counts)
        if not any(counts.values()):
            rep.converged = True
            break
    if not rep.converged:
        logger.warning("canonicalize: still rewriting after %d rounds (%s)", max_rounds, rep.rounds[-1])
    if normalize_attributes in passes and g.opset < TARGET_OPSET:
        logger.warning(
            "canonicalize: graph '%s' left at opset %d: normalize_attributes could not run (ranks "
            "unknown; fix the input dims and run shape inference first)",
            g.name,
            g.opset,
        )
    g.toposort()
    g.prune()
    logger.debug("%s", rep)
    return (g, rep) if report else g
