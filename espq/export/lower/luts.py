"""Attach look-up tables (esp_dl_facts.md §3.3, esp_ppq_facts.md §4.7 ``AddLUTPattern``).

* S8 nodes of :data:`LUT8_OPS` with one activation input and one output (PRelu: scalar slope only) get
  a 256-entry INT8 table ``<OpType>_lut_<k>`` with the output exponent and the attribute ``lut``.
  Identical tables (same op type, values and exponent) are shared by name, as ESP-PPQ does (a table
  is read through the ``lut`` attribute, not as a node input, so sharing is safe).
* S16 nodes of :data:`LUT16_OPS` become op ``LUT`` (attributes ``original_op_type``, ``int16_lut_step``,
  ``lut``; the original attributes are kept) with a ``65536/step + 1``-entry INT16 table, unless
  ``int16_lut_step`` is 0. An S16 Gelu needs a table (ESP-DL's Gelu is the LUT module).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from espq.errors import UnsupportedOpError
from espq.export.lower.state import ExportState
from espq.export.weights import param_values
from espq.ir.op_facts import OP_FACTS
from espq.ir.spec import S8, S16
from espq.sim.lut import LUT8_OPS, LUT16_OPS, build_table


def attach_luts(state: ExportState) -> dict[str, tuple[np.ndarray, int, int]]:
    """Create the tables; returns the int16 LUT nodes as name -> (table, e_in, e_out) for the simulator."""
    g = state.graph
    int16: dict[str, tuple[np.ndarray, int, int]] = {}
    k = 0
    shared: dict[tuple, str] = {}
    for node in g.nodes:
        qt = state.quant_type(node)
        op = node.op_type
        if qt == S8 and op in LUT8_OPS:
            bits, step = 8, 1
        elif qt == S16 and op in LUT16_OPS and state.int16_lut_step > 0:
            bits, step = 16, state.int16_lut_step
        elif qt == S16 and op == "Gelu":
            raise UnsupportedOpError(
                f"node '{node.name}' (Gelu, S16): ESP-DL runs Gelu only as a table; export with "
                "int16_lut_step > 0 or run the node at 8 bits"
            )
        else:
            continue
        acts = [t for t in node.inputs if state.is_activation(t)]
        if len(acts) != 1 or node.inputs[0] != acts[0] or len(node.outputs) != 1:
            continue
        params = [None if not t else torch.from_numpy(param_values(state, t)) for t in node.inputs[1:]]
        if op == "PRelu" and (params[0] is None or params[0].numel() != 1):
            continue  # per-channel slope: the PRelu module computes it (no table)
        e_in = int(state.specs[node.inputs[0]].exponent)
        out_spec = state.specs[node.outputs[0]]
        e_out = int(out_spec.exponent)
        # a scalar slope of shape [1, 1, 1] would broadcast the table to [1, 1, 256]: tables are 1-D
        table = build_table(op, node.attrs, params, e_in, e_out, bits, state.target, step).reshape(-1)
        key = (op, bits, e_out, table.tobytes())
        if key not in shared:
            shared[key] = g.unique_name(f"{op}_lut_{k}")
            k += 1
            state.luts[shared[key]] = (table, e_out)
        name = shared[key]
        node.attrs["lut"] = name
        if bits == 16:
            node.attrs["original_op_type"] = op
            node.attrs["int16_lut_step"] = step
            node.op_type = "LUT"
            int16[node.name] = (table, e_in, e_out)
    _warn_float_math(state)
    return int16


def _warn_float_math(state: ExportState) -> None:
    """Warn about int16 activations left as modules that compute f(x) in float32 on the chip
    (esp_dl_facts.md §4.6; users measured ~660 ms per such layer, esp_ppq_2026.md §1.15)."""
    slow = [
        n
        for n in state.graph.nodes
        if state.quant_type(n) == S16 and n.op_type in OP_FACTS and OP_FACTS[n.op_type].float_math
    ]
    if not slow:
        return
    tableable = [n.name for n in slow if n.op_type in LUT16_OPS]
    names = ", ".join(f"'{n.name}' ({n.op_type})" for n in slow[:5]) + (" ..." if len(slow) > 5 else "")
    hint = (
        f"; lut_optimization=True (int16_lut_step=32) exports {len(tableable)} of them as bit-exact LUT ops"
        if tableable
        else "; run them at 8 bits (a table) if the chip's time matters"
    )
    warnings.warn(
        f"{len(slow)} int16 activation(s) will compute in float32 on the chip (dequantize, f(x), requantize "
        f"per element; ~660 ms per layer measured by users on a YOLO26 head): {names}{hint}",
        stacklevel=3,
    )
