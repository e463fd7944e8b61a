"""GRU/LSTM nodes as ESP-DL's modules read them (``dl_module_gru.hpp`` / ``dl_module_lstm.hpp``).

* A quantized node gets ``gate_exponent`` = the fixed exponent its biases and LSTM cell state carry
  (ESP-PPQ's ``QuantRNNPattern`` writes the same, esp_ppq_facts §2.7); without it the module uses −8
  and adds the 2^−9 biases at twice their value.
* An all-zero constant ``initial_h`` / ``initial_c`` (what ``torch.onnx.export`` writes for an
  ``nn.LSTM`` called without a state) becomes an absent input: the module then clears the state, the
  same zeros, and the file needs no tensor that both inputs would share at different widths.
"""

from __future__ import annotations

import numpy as np

from espq.export.lower.state import ExportState
from espq.ir import quant_rules as rules
from espq.ir.spec import F32

#: initial_h / initial_c input indices (ONNX GRU has only initial_h)
STATE_INPUTS = {"GRU": (5,), "LSTM": (5, 6)}


def prepare_rnn(state: ExportState) -> int:
    """Set ``gate_exponent`` on quantized GRU/LSTM nodes and drop all-zero constant initial states;
    returns the number of nodes changed."""
    g = state.graph
    changed = 0
    for node in g.nodes:
        if node.op_type not in rules.RNN_OPS:
            continue
        if state.quant_type(node) != F32:
            node.attrs["gate_exponent"] = rules.RNN_FIXED_EXPONENT
        for i in STATE_INPUTS.get(node.op_type, ()):
            t = node.inputs[i] if i < len(node.inputs) else ""
            if t and t in g.initializers and not np.any(np.asarray(g.initializers[t])):
                node.inputs[i] = ""
        while node.inputs and not node.inputs[-1]:
            node.inputs.pop()
        changed += 1
    if changed:
        g.invalidate()
        used = {t for n in g.nodes for t in n.inputs}
        for name in [k for k in g.initializers if k not in used]:
            del g.initializers[name]
    return changed
