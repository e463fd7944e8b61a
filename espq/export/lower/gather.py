"""A Gather with a scalar (rank-0) index becomes Gather with a 1-element index + Squeeze.

ESP-DL's Gather takes its output rank from the stored index tensor (``dl_module_gather.hpp``
``get_output_shape``: data dims before ``axis`` + index dims + data dims after it), and a rank-0
parameter cannot be stored (dims [] crash the loader, esp_dl_facts.md §2.1; the builder writes [1]).
So ONNX ``Gather(x, 2, axis=3)`` on [1, 4, 4, 5] (output [1, 4, 4]) would give [1, 4, 4, 1] on the
chip; the Squeeze (a view) drops the kept axis again, so the file computes the ONNX shape.
"""

from __future__ import annotations

import numpy as np

from espq.export.lower.state import QUANT_TYPE, ExportState
from espq.ir import Node
from espq.ir.graph import TensorInfo


def split_scalar_gather(state: ExportState) -> int:
    """Rewrite every Gather whose index is a rank-0 initializer; returns the number rewritten."""
    g = state.graph
    done = 0
    for node in list(g.nodes):
        if node.op_type != "Gather" or len(node.inputs) < 2 or node.inputs[1] not in g.initializers:
            continue
        idx = np.asarray(g.initializers[node.inputs[1]])
        shape = g.shape(node.inputs[0])
        out = node.outputs[0]
        if idx.ndim != 0 or shape is None:
            continue
        axis = int(node.attr("axis", 0)) % len(shape)
        kept = tuple(int(d) if i != axis else 1 for i, d in enumerate(shape))
        mid = state.new_tensor(f"{out}_gathered", out, state.specs.get(out))
        g.values[mid] = TensorInfo(g.values[mid].dtype, kept)
        node.inputs[1] = state.new_initializer(f"{node.name}_index", idx.reshape(1).astype(np.int64))
        node.outputs[0] = mid
        axes = state.new_initializer(f"{node.name}_squeeze_axes", np.array([axis], np.int64))
        squeeze = Node(
            g.unique_name(f"{node.name}_squeeze"),
            "Squeeze",
            [mid, axes],
            [out],
            {QUANT_TYPE: node.attrs.get(QUANT_TYPE, state.tensor_quant_type(out))},
        )
        g.add_node(squeeze, g.nodes.index(node) + 1)
        g.invalidate()
        done += 1
    return done
