"""Which target a `.espdl` file was written for, when its metadata does not say (§2.5, §4.2).

The rules read only the file's Conv/Gemm weights and biases and keep the registered targets whose data
(weight layout, per-channel support, int8 bias range) allows them, so they need no target-name
comparison. :func:`target_candidates` lists what the file allows, :func:`proven_target` answers only
when that is one family, :func:`infer_target` always answers (a best guess where the file is ambiguous).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from espq.targets.base import Target
from espq.targets.registry import FAMILY_TARGETS, get_target

#: Weight layout strings of the plain (non-PIE) C kernels' files (§2.5).
PLAIN_WEIGHT_LAYOUTS = frozenset({"NHWC", "HWCN", "NWC", "WCN"})


def _weighted(model: Any) -> list[tuple[Any, Any, Any]]:
    """(node, weight initializer, bias initializer or None) of every Conv/Gemm with a stored weight."""
    inits = model.graph.initializers
    out = []
    for n in model.graph.nodes:
        if n.op_type in ("Conv", "Gemm") and len(n.inputs) > 1 and n.inputs[1] in inits:
            bias = inits.get(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
            out.append((n, inits[n.inputs[1]], bias))
    return out


def _bias_fits(target: Target, node: Any, bias: Any) -> bool:
    """Whether an int8 node's bias values lie in ``target``'s int8 bias range (S3: 20 bits, §4.3)."""
    if bias is None or node.attr("quant_type") != "S8" or bias.numel == 0:
        return True
    lo, hi = target.bias_range(8)
    values = np.asarray(bias.values())
    return bool(values.min() >= lo and values.max() <= hi)


def target_candidates(model: Any) -> tuple[Target, ...]:
    """The targets (the first of each family) an :class:`~espq.espdl.model.EspdlModel` can be for.

    ``metadata_props["target"]`` names one. Otherwise: plain weight layouts allow only plain-layout
    targets (the C chips), blocked layouts only blocked ones (P4, S3); per-channel weight exponents allow
    only targets with per-channel weights (P4); an int8 bias outside a target's bias range rules that
    target out (S3 keeps 20 bits). A file without Conv/Gemm weights allows every family.
    """
    if model.target is not None:
        return (get_target(model.target),)
    found = _weighted(model)
    layouts = {(w.layout or "") for _, w, _ in found} - {""}
    cands = [get_target(names[0]) for names in FAMILY_TARGETS.values() if names]
    if layouts & PLAIN_WEIGHT_LAYOUTS:
        cands = [t for t in cands if t.weight_layout == "plain"]
    elif layouts:
        cands = [t for t in cands if t.weight_layout == "blocked"]
    if any(len(w.exponents) > 1 for _, w, _ in found):
        cands = [t for t in cands if t.per_channel_weights]
    return tuple(t for t in cands if all(_bias_fits(t, n, b) for n, _, b in found))


def proven_target(model: Any) -> Target | None:
    """The target the file proves (its metadata, or a single candidate family); None when ambiguous,
    e.g. Espressif's per-tensor P4 zoo files, whose weights and biases an S3 file could hold as well."""
    cands = target_candidates(model)
    return cands[0] if len(cands) == 1 else None


def infer_target(model: Any) -> Target:
    """The target of an :class:`~espq.espdl.model.EspdlModel`: :func:`proven_target` when the file proves
    one, else a guess among :func:`target_candidates` (the first blocked per-tensor one, esp32s3, for
    blocked per-tensor weights; the first registered, esp32p4, without weights). Callers that need a
    target anyway (latency estimate, ``.json`` side file) use it; whatever shows the target to a user
    should say "unknown" instead of a guess (``espq inspect`` does)."""
    cands = target_candidates(model) or tuple(get_target(n[0]) for n in FAMILY_TARGETS.values() if n)
    per_tensor = [t for t in cands if t.weight_layout == "blocked" and not t.per_channel_weights]
    if len(cands) > 1 and per_tensor and _weighted(model):
        return per_tensor[0]
    return cands[0]
