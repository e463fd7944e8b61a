"""Turn a remaining ``BatchNormalization`` into a depthwise 1×1 Conv.

ESP-PPQ REPLACE_BATCHNORM_TO_CONV (esp_ppq_facts.md §3.2 item 6): weight γ/√(var+ε) of shape
[C,1,1,1], bias β − γ·mean/√(var+ε), group = C. ESP-DL has no BatchNormalization module
(esp_dl_facts.md §3.1). A 3-D (N,C,L) input gets a 1-D Conv.
"""

from __future__ import annotations

import logging

from espq.ir.graph import Graph
from espq.ir.passes._common import add_initializer, rank, skip
from espq.ir.passes.fold_batchnorm import bn_scale_shift

logger = logging.getLogger(__name__)


def batchnorm_to_conv(graph: Graph) -> int:
    """Replace BatchNormalization on 3-D/4-D inputs by a depthwise 1×1 Conv. Returns #nodes replaced.

    * matches: ``BatchNormalization`` (inference mode, only its Y output used);
    * fires when: the parameters are constant and the input rank is known to be 3 or 4;
    * produces: ``Conv(x, W[C,1,1(,1)], B[C], group=C)`` writing the BN's output, same node name.
    """
    count = 0
    for bn in list(graph.nodes):
        if bn.op_type != "BatchNormalization":
            continue
        r = rank(graph, bn.inputs[0])
        if r not in (3, 4):
            skip(logger, bn, f"input rank {r} is not 3 or 4")
            continue
        if bn.attrs.get("training_mode", 0):
            skip(logger, bn, "training_mode=1")
            continue
        if any(o and (graph.consumers(o) or o in graph.outputs) for o in bn.outputs[1:]):
            skip(logger, bn, "its running-statistics outputs are used")
            continue
        ss = bn_scale_shift(graph, bn)
        if ss is None:
            skip(logger, bn, "BN parameters are not constant")
            continue
        scale, shift = ss
        dtype = graph.initializers[bn.inputs[1]].dtype
        c, nd = scale.size, r - 2
        w = add_initializer(graph, f"{bn.name}_weight", scale.reshape((c, 1) + (1,) * nd).astype(dtype))
        b = add_initializer(graph, f"{bn.name}_bias", shift.astype(dtype))
        bn.op_type = "Conv"
        bn.inputs = [bn.inputs[0], w, b]
        bn.outputs = bn.outputs[:1]
        bn.attrs = {
            "kernel_shape": [1] * nd,
            "strides": [1] * nd,
            "dilations": [1] * nd,
            "pads": [0, 0] * nd,
            "group": c,
        }
        graph.invalidate()
        count += 1
    return count
