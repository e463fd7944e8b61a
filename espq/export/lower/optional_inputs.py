"""Empty optional initializers become absent inputs (esp_dl_facts.md §2.1: every referenced
initializer needs non-empty dims and data; an empty input name means "optional input absent").

ONNX exporters write Resize's unused ``roi`` and ``scales`` as empty tensors; for those inputs an empty
tensor and an absent one mean the same. Any other empty initializer is an error at the end of lowering.
"""

from __future__ import annotations

import numpy as np

from espq.export.lower.state import ExportState

#: op type -> input indices where an empty tensor equals an absent optional input (ONNX semantics).
EMPTY_MEANS_ABSENT: dict[str, tuple[int, ...]] = {"Resize": (1, 2)}


def drop_empty_optional_inputs(state: ExportState) -> int:
    """Replace empty optional initializer inputs by ``""``; returns the number replaced."""
    g = state.graph
    dropped = 0
    for node in g.nodes:
        for i in EMPTY_MEANS_ABSENT.get(node.op_type, ()):
            t = node.inputs[i] if i < len(node.inputs) else ""
            if t and t in g.initializers and np.asarray(g.initializers[t]).size == 0:
                node.inputs[i] = ""
                dropped += 1
    if dropped:
        g.invalidate()
        used = {t for n in g.nodes for t in n.inputs}
        for name in [k for k, v in g.initializers.items() if np.asarray(v).size == 0 and k not in used]:
            del g.initializers[name]
    return dropped
