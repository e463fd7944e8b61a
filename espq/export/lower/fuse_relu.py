"""Fuse a Relu into its Conv/Gemm/MatMul host as ``activation="Relu"`` (esp_ppq_facts.md §3.7 step 3,
FuseReluLikePattern; esp_dl_facts.md §2.2).

The plan decides which pairs fuse (``plan.fused``: host -> Relu). The host takes over the Relu's
output tensor name and spec; every other quantized Conv/Gemm/MatMul gets ``activation="Linear"``.
"""

from __future__ import annotations

from espq.errors import UnsupportedOpError
from espq.export.lower.state import ExportState
from espq.ir.quant_rules import RELU_FUSION_HOSTS
from espq.ir.spec import F32

HOSTS = RELU_FUSION_HOSTS


def fuse_relu(state: ExportState) -> int:
    """Apply ``plan.fused``; returns the number of Relus removed."""
    g = state.graph
    fused = 0
    for host_name, relu_name in sorted(state.plan.fused.items()):
        if not (g.has_node(host_name) and g.has_node(relu_name)):
            continue
        host, relu = g.node(host_name), g.node(relu_name)
        mid = host.outputs[0]
        if relu.inputs[0] != mid or len(g.consumers(mid)) != 1 or mid in g.outputs:
            raise UnsupportedOpError(
                f"cannot fuse Relu '{relu_name}' into '{host_name}': the Relu does not read the host's "
                "only output; re-quantize the model (the plan does not match the graph)"
            )
        out = relu.outputs[0]
        g.remove_node(relu)
        host.outputs[0] = out
        g.values.pop(mid, None)
        state.specs.pop(mid, None)
        state.perms.pop(mid, None)
        host.attrs["activation"] = "Relu"
        g.invalidate()
        fused += 1
    for node in g.nodes:
        if node.op_type in HOSTS and state.quant_type(node) != F32:
            node.attrs.setdefault("activation", "Linear")
    return fused
