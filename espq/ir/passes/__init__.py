"""Canonicalisation passes: each ``pass(graph) -> int`` rewrites in place and returns #rewrites.

:func:`canonicalize` (in :mod:`espq.ir.passes.manager`) runs ``CANONICAL_PASSES`` on a copy.
"""

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
from espq.ir.passes.manager import CANONICAL_PASSES, PassReport, canonicalize
from espq.ir.passes.matmul_add_to_gemm import matmul_add_to_gemm
from espq.ir.passes.minmax_to_clip import minmax_to_clip
from espq.ir.passes.normalize_attributes import normalize_attributes
from espq.ir.passes.pool_ceil_to_pads import pool_ceil_to_pads
from espq.ir.passes.remove_dead_nodes import remove_dead_nodes
from espq.ir.passes.remove_identity import remove_identity

__all__ = [
    "CANONICAL_PASSES",
    "PassReport",
    "batchnorm_to_conv",
    "canonicalize",
    "constant_to_initializer",
    "convtranspose_to_conv",
    "fold_batchnorm",
    "fold_constants",
    "fold_shape_ops",
    "fuse_add_to_bias",
    "fuse_gelu",
    "fuse_layernorm",
    "fuse_lpnorm",
    "fuse_prelu",
    "fuse_rmsnorm",
    "fuse_swish",
    "infer_shapes",
    "matmul_add_to_gemm",
    "minmax_to_clip",
    "normalize_attributes",
    "pool_ceil_to_pads",
    "remove_dead_nodes",
    "remove_identity",
]
