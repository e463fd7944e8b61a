"""The export lowering pipeline: small rewrites of an :class:`ExportState`, applied in order.

1. :func:`fuse_relu` - Conv/Gemm/MatMul + Relu -> ``activation="Relu"``;
2. :func:`prepare_gemm` - Gemm weights to [C, N] with ``transB = 0``;
3. :func:`insert_quant_nodes` - Quantize/Requantize/DequantizeLinear at precision boundaries;
4. :func:`prepare_dynamic_matmul` - the block layout of a non-constant MatMul operand at run time;
5. :func:`split_scalar_gather` - Gather with a rank-0 index -> 1-element index + Squeeze;
   :func:`prelu_to_4d` - per-channel PRelu on a 2-D/3-D tensor -> Reshape, 4-D PRelu, Reshape;
   :func:`to_channel_last` - NHWC/NWC for conv-like ops, axis remapping, Transposes;
6. :func:`fuse_transposes` - compose Transpose chains, drop identity ones;
7. :func:`attach_luts` - int8 tables / int16 ``LUT`` ops;
8. :func:`drop_empty_optional_inputs` - empty Resize roi/scales become absent inputs;
   :func:`prepare_rnn` - GRU/LSTM ``gate_exponent``, all-zero constant initial states become absent;
9. :func:`check_supported` - every node's (op_type, quant_type) runs on the target.
"""

from __future__ import annotations

import numpy as np

from espq.errors import UnsupportedOpError
from espq.export.lower.channel_last import to_channel_last
from espq.export.lower.fuse_relu import fuse_relu
from espq.export.lower.gather import split_scalar_gather
from espq.export.lower.gemm import prepare_gemm
from espq.export.lower.luts import attach_luts
from espq.export.lower.matmul import prepare_dynamic_matmul
from espq.export.lower.optional_inputs import drop_empty_optional_inputs
from espq.export.lower.prelu import prelu_to_4d
from espq.export.lower.quant_nodes import insert_quant_nodes
from espq.export.lower.rnn import prepare_rnn
from espq.export.lower.state import ExportState
from espq.export.lower.transposes import fuse_transposes
from espq.ir import Graph
from espq.ir.spec import QuantPlan
from espq.sim.lut import lut_codes
from espq.targets import Target


def check_supported(state: ExportState) -> None:
    """UnsupportedOpError naming the first node the target cannot run with its quant_type."""
    for node in state.graph.nodes:
        qt = state.quant_type(node)
        if node.op_type not in state.target.ops:
            raise UnsupportedOpError(
                f"node '{node.name}': op {node.op_type} is not an ESP-DL operator on {state.target.name}; "
                "replace it before quantizing (see espq.targets.check_model)"
            )
        if not state.target.supports(node.op_type, qt):
            raise UnsupportedOpError(
                f"node '{node.name}': op {node.op_type} cannot run as {qt} on {state.target.name}; "
                "choose another precision for this node (setting.precision)"
            )


def lower(
    graph: Graph, plan: QuantPlan, target: Target, int16_lut_step: int = 32
) -> tuple[ExportState, dict]:
    """Run the whole pipeline on a copy of ``graph``; returns the state and the int16 LUT tables
    (node name -> (table, e_in, e_out)) the simulator needs to reproduce them."""
    if int16_lut_step:
        lut_codes(16, int16_lut_step)  # ConfigError unless a power of two dividing 65536
    state = ExportState.from_model(graph, plan, target, int16_lut_step)
    fuse_relu(state)
    prepare_gemm(state)
    insert_quant_nodes(state)
    prepare_dynamic_matmul(state)
    split_scalar_gather(state)
    prelu_to_4d(state)
    to_channel_last(state)
    fuse_transposes(state)
    int16 = attach_luts(state)
    drop_empty_optional_inputs(state)
    prepare_rnn(state)
    check_supported(state)
    for name, value in state.graph.initializers.items():
        if np.asarray(value).size == 0:
            raise UnsupportedOpError(
                f"initializer '{name}' is empty; ESP-DL cannot load empty parameters (remove the input)"
            )
    return state, int16


__all__ = [
    "ExportState",
    "attach_luts",
    "check_supported",
    "drop_empty_optional_inputs",
    "fuse_relu",
    "fuse_transposes",
    "insert_quant_nodes",
    "lower",
    "prepare_dynamic_matmul",
    "prelu_to_4d",
    "prepare_gemm",
    "prepare_rnn",
    "split_scalar_gather",
    "to_channel_last",
]
