"""A PRelu with a per-channel slope on a 2-D or 3-D tensor runs as Reshape -> 4-D PRelu -> Reshape.

ESP-DL's PRelu reads ``alpha[c]`` for ``c < input->shape[3]`` and asserts a ``[C, 1, 1]`` slope
(``dl_module_prelu.hpp``, ``dl_base.hpp get_activation_args``): it only runs per-channel on 4-D tensors
(NHWC on the chip). A PRelu after a Linear layer (``[N, C]``, MTCNN's R-/O-Net) or on ``[N, C, L]`` is
therefore rewritten to ``[N, C, L', 1]`` (``L'`` = the product of the trailing dims, 1 for 2-D), where the
channel-last pass makes it NHWC. Reshapes are views that keep the exponent, so the values are those of the
original PRelu.
"""

from __future__ import annotations

import math

import numpy as np

from espq.export.lower.state import QUANT_TYPE, ExportState
from espq.ir import Node
from espq.ir.graph import TensorInfo


def _per_channel_slope(slope: np.ndarray, shape: tuple[int, ...]) -> bool:
    full = (1,) * (len(shape) - slope.ndim) + tuple(slope.shape)
    return slope.size > 1 and full == (1, int(shape[1])) + (1,) * (len(shape) - 2)


def prelu_to_4d(state: ExportState) -> int:
    """Rewrite every per-channel PRelu on a rank-2/3 input; returns the number rewritten."""
    g = state.graph
    done = 0
    for node in list(g.nodes):
        if node.op_type != "PRelu" or len(node.inputs) < 2 or node.inputs[1] not in g.initializers:
            continue
        shape = g.shape(node.inputs[0])
        slope = np.asarray(g.initializers[node.inputs[1]])
        if shape is None or len(shape) not in (2, 3) or not _per_channel_slope(slope, tuple(shape)):
            continue
        x, out = node.inputs[0], node.outputs[0]
        n, c = int(shape[0]), int(shape[1])
        four = (n, c, math.prod(int(d) for d in shape[2:]), 1)
        qtype = node.attrs.get(QUANT_TYPE, state.tensor_quant_type(out))
        x4 = state.new_tensor(f"{x}_4d", x, state.specs.get(x))
        y4 = state.new_tensor(f"{out}_4d", out, state.specs.get(out))
        g.values[x4] = TensorInfo(g.values[x4].dtype, four)
        g.values[y4] = TensorInfo(g.values[y4].dtype, four)
        to4 = state.new_initializer(f"{node.name}_shape_4d", np.array(four, np.int64))
        back = state.new_initializer(f"{node.name}_shape_back", np.array(shape, np.int64))
        node.inputs[0] = x4
        old_slope = node.inputs[1]
        node.inputs[1] = state.new_initializer(f"{node.name}_slope", slope.reshape(c, 1, 1).copy())
        if old_slope in state.params:  # the slope's quantization spec goes with it
            state.params[node.inputs[1]] = state.params[old_slope]
        node.outputs[0] = y4
        at = g.nodes.index(node)
        g.add_node(
            Node(g.unique_name(f"{node.name}_to_4d"), "Reshape", [x, to4], [x4], {QUANT_TYPE: qtype}), at
        )
        g.add_node(
            Node(g.unique_name(f"{node.name}_from_4d"), "Reshape", [y4, back], [out], {QUANT_TYPE: qtype}),
            at + 2,
        )
        g.invalidate()
        done += 1
    return done
