"""Turn ``MaxPool(ceil_mode=1)`` into floor-mode MaxPool with explicit end padding (issue 13 finding 8).

ESP-DL ignores ``ceil_mode`` (esp_dl_facts.md §3.2) and its MaxPool takes the max over the valid,
unpadded part of each window (§4.7), which is ONNX's MaxPool padding semantics (pads are −inf). Ceil
mode only adds windows at the end of an axis, and ONNX drops a window that would start in the end
padding, so every window still covers at least one input element: extending the end pads by the extra
cells the last window reaches makes floor mode give the same windows and the same values, with no pad
value that could win a max (MTCNN's P/R/O-Net pool with ``ceil_mode=True``).

AveragePool is rewritten only where ceil mode changes nothing (``ceil_mode`` is dropped): ESP-DL
divides every window by the kernel area (§4.7) while ONNX does not count the ceil-mode cells even with
``count_include_pad=1``, so a ceil-mode window past the end has no exact floor-mode form; those keep
the capability check's error.
"""

from __future__ import annotations

import logging
import math

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import skip

logger = logging.getLogger(__name__)


def _extra_end_pads(node: Node, sizes: tuple[int, ...]) -> list[int] | None:
    """Cells ceil mode adds at the end of each spatial axis, or ``None`` when the attributes are
    not explicit (auto_pad SAME_*)."""
    k = [int(v) for v in node.attr("kernel_shape")]
    n = len(k)
    auto = node.attr("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "VALID"):
        return None
    s = [int(v) for v in node.attr("strides", [1] * n)]
    d = [int(v) for v in node.attr("dilations", [1] * n)]
    pads = [0] * (2 * n) if auto == "VALID" else [int(v) for v in node.attr("pads", [0] * (2 * n))]
    extra = []
    for i in range(n):
        reach = (k[i] - 1) * d[i] + 1
        span = sizes[i] + pads[i] + pads[i + n] - reach
        out = math.ceil(span / s[i]) + 1
        if (out - 1) * s[i] >= sizes[i] + pads[i]:
            out -= 1  # ONNX: a window may not start in the end padding
        extra.append(max((out - 1) * s[i] + reach - (sizes[i] + pads[i] + pads[i + n]), 0))
    return extra


def pool_ceil_to_pads(graph: Graph) -> int:
    """Rewrite ceil-mode pooling as floor-mode pooling; returns #rewrites.

    * matches: ``MaxPool``/``AveragePool`` with ``ceil_mode=1``, explicit pads (or VALID) and a known
      input shape;
    * fires when: MaxPool always (the end pads grow by what ceil mode adds); AveragePool only when
      ceil mode adds nothing;
    * produces: the same node with ``ceil_mode`` removed and, for MaxPool, larger end ``pads``.
    """
    count = 0
    for node in graph.nodes:
        if node.op_type not in ("MaxPool", "AveragePool") or int(node.attr("ceil_mode", 0)) == 0:
            continue
        shape = graph.shape(node.inputs[0])
        if shape is None or node.attr("kernel_shape") is None or len(node.outputs) != 1:
            skip(logger, node, "input shape or kernel_shape unknown (or an Indices output)")
            continue
        extra = _extra_end_pads(node, tuple(shape[2:]))
        if extra is None:
            skip(logger, node, "auto_pad SAME_*")
            continue
        if any(extra) and node.op_type == "AveragePool":
            skip(logger, node, "ceil mode adds cells ESP-DL would count in the divisor")
            continue
        n = len(extra)
        if any(extra):
            pads = [int(v) for v in node.attr("pads", [0] * (2 * n))]
            if node.attr("auto_pad", "NOTSET") == "VALID":
                pads = [0] * (2 * n)
            node.attrs["pads"] = pads[:n] + [pads[n + i] + extra[i] for i in range(n)]
            node.attrs.pop("auto_pad", None)
        node.attrs.pop("ceil_mode")
        count += 1
    return count
