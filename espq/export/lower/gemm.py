"""Gemm preparation (esp_dl_facts.md §2.5, esp_ppq_facts.md §2.7 "Gemm"): the weight becomes the
logical [C, N] matrix with ``transB = 0``; ``alpha``/``beta`` must be 1 and ``transA`` 0 (the runtime
reads neither alpha nor beta and refuses transA)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from espq.errors import UnsupportedOpError
from espq.export.lower.state import ExportState
from espq.ir.spec import F32


def prepare_gemm(state: ExportState) -> int:
    """Rewrite every quantized Gemm to transB = 0; returns the number of weights transposed."""
    g = state.graph
    changed = 0
    for node in g.nodes:
        if node.op_type != "Gemm" or state.quant_type(node) == F32:
            continue
        alpha, beta = float(node.attr("alpha", 1.0)), float(node.attr("beta", 1.0))
        if alpha != 1.0 or beta != 1.0 or int(node.attr("transA", 0)):
            raise UnsupportedOpError(
                f"Gemm '{node.name}': alpha={alpha}, beta={beta}, transA={node.attr('transA', 0)}; ESP-DL "
                "runs only alpha = beta = 1 and transA = 0 (fold the factors into the weights)"
            )
        w = node.inputs[1]
        if w not in g.initializers:
            raise UnsupportedOpError(
                f"Gemm '{node.name}': the weight '{w}' is not a constant; ESP-DL Gemm needs a constant "
                "weight (use MatMul for two activations)"
            )
        if int(node.attr("transB", 0)):
            g.initializers[w] = np.ascontiguousarray(np.asarray(g.initializers[w]).T)
            spec = state.params.get(w)
            if spec is not None and spec.axis is not None:
                state.params[w] = replace(spec, axis=1 - spec.axis)
            changed += 1
        node.attrs["transB"] = 0
        node.attrs.setdefault("alpha", 1.0)
        node.attrs.setdefault("beta", 1.0)
    return changed
