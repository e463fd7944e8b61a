"""Lower ``ConvTranspose`` to ``InsertZeros`` + ``Conv`` (ESP-DL has no ConvTranspose module).

ESP-PPQ's ConvTransposeDecompositionPass (esp_ppq_facts.md §3.4) does the same but ignores
dilation in its padding formula; this version is exact for any dilation (§9.2 lists the quirk).

ESP-DL ``InsertZeros`` (esp_dl_facts.md §3.2; esp-dl ``dl_module_insert_zeros.hpp``): attributes
``stride`` and ``output_padding`` (one int per spatial dim, 1-D or 2-D only); each spatial size n
becomes n + (stride − 1)(n − 1) + output_padding, i.e. stride − 1 zeros between neighbours and
output_padding zeros at the end. Here ``output_padding`` is always written as zeros: the extra
rows/columns are put in the Conv's end padding instead (same zeros, no extra buffer).

For each spatial axis with stride s, kernel k, dilation d, ConvTranspose pads (pb, pe) and
output_padding op, the equivalent stride-1 Conv (same dilation, weight flipped spatially and
in/out channels swapped per group) has pads

    begin = d·(k − 1) − pb,   end = d·(k − 1) − pe + op.

A negative Conv pad means cropping: the Conv gets pad 0 there and a ``Slice`` removes the extra
outputs. ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID and ``output_shape`` are turned into explicit
pads first (ONNX ConvTranspose spec), which needs the input's static spatial size.
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, set_value, skip

logger = logging.getLogger(__name__)


def convtranspose_weight_to_conv(w: np.ndarray, group: int) -> np.ndarray:
    """ConvTranspose W [C_in, C_out/g, k...] → Conv W [C_out, C_in/g, k...], flipped on every spatial axis."""
    c_in, c_out_g = w.shape[0], w.shape[1]
    k = w.shape[2:]
    grouped = w.reshape((group, c_in // group, c_out_g) + k)
    swapped = np.swapaxes(grouped, 1, 2).reshape((group * c_out_g, c_in // group) + k)
    return np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, w.ndim))))


def _explicit_pads(node: Node, in_sp: tuple[int, ...] | None, k: list[int]) -> list[int] | str:
    """ConvTranspose pads [b..., e...] after resolving auto_pad/output_shape, or a skip reason."""
    nd = len(k)
    s = list(node.attrs.get("strides", [1] * nd))
    d = list(node.attrs.get("dilations", [1] * nd))
    op = list(node.attrs.get("output_padding", [0] * nd))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    out_shape = node.attrs.get("output_shape")
    if auto_pad == "VALID":
        return [0] * (2 * nd)
    if out_shape is None and auto_pad in ("NOTSET", ""):
        return list(node.attrs.get("pads", [0] * (2 * nd)))
    if in_sp is None:
        return "auto_pad/output_shape need the input's static spatial size"
    if out_shape is None:  # SAME_*: output = input · stride
        out_shape = [in_sp[i] * s[i] for i in range(nd)]
    out_shape = list(out_shape)[-nd:]
    pads = [0] * (2 * nd)
    for i in range(nd):
        total = s[i] * (in_sp[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1 - out_shape[i]
        if auto_pad == "SAME_UPPER":
            pads[i], pads[i + nd] = total // 2, total - total // 2
        else:  # SAME_LOWER, or output_shape with NOTSET (ONNX spec's "else" branch)
            pads[i], pads[i + nd] = total - total // 2, total // 2
    return pads


def _lower(graph: Graph, node: Node) -> str | None:
    """Rewrite one ConvTranspose in place; returns a reason when it may not fire."""
    w = const(graph, node.inputs[1])
    if w is None:
        return f"weight '{node.inputs[1]}' is not constant"
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    k = list(w.shape[2:])
    nd = len(k)
    g = int(node.attrs.get("group", 1))
    s = list(node.attrs.get("strides", [1] * nd))
    d = list(node.attrs.get("dilations", [1] * nd))
    op = list(node.attrs.get("output_padding", [0] * nd))
    if any(x > 1 for x in s) and nd not in (1, 2):
        return f"{nd}-D spatial input: ESP-DL InsertZeros handles 1-D/2-D only"
    x_shape = graph.shape(node.inputs[0])
    pads = _explicit_pads(node, None if x_shape is None else tuple(x_shape[2:]), k)
    if isinstance(pads, str):
        return pads
    conv_pads = [d[i] * (k[i] - 1) - pads[i] for i in range(nd)]
    conv_pads += [d[i] * (k[i] - 1) - pads[i + nd] + op[i] for i in range(nd)]
    crop = [max(-p, 0) for p in conv_pads]
    conv_pads = [max(p, 0) for p in conv_pads]

    dtype = graph.dtype(node.inputs[0])
    x = node.inputs[0]
    pos = graph.nodes.index(node)
    if any(v > 1 for v in s):
        z = graph.unique_name(f"{node.name}_zeros")
        graph.add_node(
            Node(
                graph.unique_name(f"{node.name}/InsertZeros"),
                "InsertZeros",
                [x],
                [z],
                {"stride": s, "output_padding": [0] * nd},
            ),
            pos,
        )
        pos += 1
        if x_shape is not None:
            sp = [x_shape[2 + i] + (s[i] - 1) * (x_shape[2 + i] - 1) for i in range(nd)]
            set_value(graph, z, dtype, tuple(x_shape[:2]) + tuple(sp))
        x = z
    w_name = add_initializer(graph, f"{node.name}_weight", convtranspose_weight_to_conv(w, g))
    node.op_type = "Conv"
    node.inputs = [x, w_name] + ([bias] if bias else [])
    node.attrs = {"kernel_shape": k, "strides": [1] * nd, "dilations": d, "pads": conv_pads, "group": g}
    if any(crop):
        out = node.outputs[0]
        tmp = graph.unique_name(f"{node.name}_uncropped")
        node.outputs[0] = tmp
        ends = [-c if c > 0 else np.iinfo(np.int64).max for c in crop[nd:]]
        sl = [
            add_initializer(graph, f"{node.name}_crop_{n}", np.array(v, np.int64))
            for n, v in (("starts", crop[:nd]), ("ends", ends), ("axes", list(range(2, 2 + nd))))
        ]
        graph.add_node(Node(graph.unique_name(f"{node.name}/crop"), "Slice", [tmp] + sl, [out]), pos + 1)
        info = graph.values.get(out)
        if info is not None and info.shape is not None:
            uncropped = list(info.shape)
            for i in range(nd):
                uncropped[2 + i] += crop[i] + crop[i + nd]
            set_value(graph, tmp, info.dtype, tuple(uncropped))
    graph.invalidate()
    return None


def convtranspose_to_conv(graph: Graph) -> int:
    """Replace each ConvTranspose by [InsertZeros →] Conv [→ Slice]. Returns #ConvTranspose replaced.

    * matches: ``ConvTranspose`` with a constant weight;
    * skips: non-constant weight; stride > 1 on a 3-D+ spatial input; auto_pad/output_shape
      without a static input shape;
    * produces: ``InsertZeros(stride=s, output_padding=0)`` (only when some stride > 1), a
      stride-1 ``Conv`` with the transformed weight, the original bias, dilation and group, and a
      cropping ``Slice`` only when a pad exceeds d·(k−1).
    """
    count = 0
    for node in list(graph.nodes):
        if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx"):
            continue
        reason = _lower(graph, node)
        if reason is not None:
            skip(logger, node, reason)
            continue
        count += 1
    return count
