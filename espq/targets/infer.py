"""Which target a `.espdl` file was written for, when its metadata does not say (§2.5, §4.2).

The rule reads only the file's Conv/Gemm weights and picks a registered target by its data (weight layout,
per-channel support), so it needs no target-name comparison.
"""

from __future__ import annotations

from typing import Any

from espq.targets.base import Target
from espq.targets.registry import FAMILY_TARGETS, get_target

#: Weight layout strings of the plain (non-PIE) C kernels' files (§2.5).
PLAIN_WEIGHT_LAYOUTS = frozenset({"NHWC", "HWCN", "NWC", "WCN"})


def _first_target(match: Any) -> Target:
    for names in FAMILY_TARGETS.values():
        tgt = get_target(names[0])
        if match(tgt):
            return tgt
    raise LookupError("no registered target matches")  # unreachable with the registry's targets


def infer_target(model: Any) -> Target:
    """The target of an :class:`~espq.espdl.model.EspdlModel` without ``metadata_props["target"]``.

    Plain layouts -> the plain-C target; per-channel weight exponents -> the first target with per-channel
    weights (esp32p4); blocked per-tensor weights -> the first blocked per-tensor target (esp32s3). With no
    Conv/Gemm weights the answer is a guess (the first registered target, esp32p4): pass ``target`` when it
    matters. A P4 file whose weights are all per-tensor reads as esp32s3: the weights alone cannot tell.
    """
    if model.target is not None:
        return get_target(model.target)
    inits = model.graph.initializers
    weights = [
        inits[n.inputs[1]]
        for n in model.graph.nodes
        if n.op_type in ("Conv", "Gemm") and len(n.inputs) > 1 and n.inputs[1] in inits
    ]
    if any((w.layout or "") in PLAIN_WEIGHT_LAYOUTS for w in weights):
        return _first_target(lambda t: t.weight_layout == "plain")
    if not weights or any(len(w.exponents) > 1 for w in weights):
        return _first_target(lambda t: t.per_channel_weights)
    return _first_target(lambda t: t.weight_layout == "blocked" and not t.per_channel_weights)
