"""GRU / LSTM in the fake-quant simulator: the chip's integer arithmetic on the codes.

ESP-DL's quantized GRU/LSTM keep their gates in int16 at the gate exponent, read sigmoid/tanh from
tables and round the cell and hidden state every step (:mod:`espq.sim.integer.rnn_arith`), so rounding
only the float op's outputs is far from the chip (silero-vad: 106 of 128 codes of ``Y`` differed). This
kernel takes the codes of the already fake-quantized inputs and parameters, runs the same functions as
the integer runner and returns the dequantized outputs; float32 nodes run the float kernel. ESP-DL
runs batch 1: a batch is run one entry at a time.
"""

from __future__ import annotations

import numpy as np
import torch

from espq.errors import UnsupportedOpError
from espq.ir import Node
from espq.ir import quant_rules as rules
from espq.ir.spec import F32, S16, QuantPlan
from espq.sim.float.registry import KERNELS, KernelFn
from espq.sim.integer.rnn_arith import RnnArith, RnnExponents, gru_codes, lstm_codes
from espq.targets import Target

GATES = {"GRU": 3, "LSTM": 4}


def _codes(t: torch.Tensor | None, exponent: int | None) -> np.ndarray | None:
    if t is None or exponent is None:
        return None
    return np.rint(t.detach().double().cpu().numpy() * 2.0 ** -int(exponent)).astype(np.int64)


def _exp(plan: QuantPlan, node: Node, i: int) -> int | None:
    if i >= len(node.inputs) or not node.inputs[i]:
        return None
    spec = plan.input_spec(node.name, i, node.inputs[i])
    return None if spec is None or spec.exponent is None else int(spec.exponent)


def _out_exp(plan: QuantPlan, node: Node, k: int, default: int) -> int:
    spec = plan.tensors.get(node.outputs[k]) if k < len(node.outputs) and node.outputs[k] else None
    return default if spec is None or spec.exponent is None else int(spec.exponent)


def rnn_kernel(plan: QuantPlan, target: Target) -> KernelFn:
    """The GRU/LSTM kernel of a simulator for ``plan`` on ``target``."""

    def kernel(node: Node, inputs: list) -> list:
        kind = plan.node_types.get(node.name, F32)
        if kind == F32:
            return KERNELS[node.op_type](node, inputs)
        op, layout = node.op_type, int(node.attrs.get("layout", 0) or 0)
        direction = node.attrs.get("direction", "forward") or "forward"
        if direction not in ("forward", "bidirectional") or (
            op == "GRU" and int(node.attrs.get("linear_before_reset", 0)) != 1
        ):
            raise UnsupportedOpError(
                f"node '{node.name}' ({op}): ESP-DL runs direction forward/bidirectional"
                + (" with linear_before_reset = 1" if op == "GRU" else "")
                + f" only (got direction '{direction}'); re-export the model that way"
            )
        dirs = 2 if direction == "bidirectional" else 1
        x = inputs[0]
        xs = x.transpose(0, 1) if layout else x  # [T, B, I]
        seq, batch, size = xs.shape
        hidden = int(node.attrs.get("hidden_size", inputs[2].shape[-1]))
        g = GATES[op]
        e_x, e_w, e_r = _exp(plan, node, 0), _exp(plan, node, 1), _exp(plan, node, 2)
        e_y = _out_exp(plan, node, 0, e_x)
        e = RnnExponents(e_x, e_w, e_r, e_y, _out_exp(plan, node, 1, e_y), rules.RNN_FIXED_EXPONENT)
        arith = RnnArith.for_target(target, rules.RNN_FIXED_EXPONENT, np.int16 if kind == S16 else np.int8)
        xc = _codes(xs, e_x)
        w = _codes(inputs[1], e_w).reshape(dirs, g * hidden, size)
        r = _codes(inputs[2], e_r).reshape(dirs, g * hidden, hidden)
        b = _codes(inputs[3] if len(inputs) > 3 else None, _exp(plan, node, 3))
        states = [
            _codes(inputs[i] if len(inputs) > i else None, _exp(plan, node, i)) for i in (5, 6)[: g - 2]
        ]
        states = [None if s is None else (s.swapaxes(0, 1) if layout else s) for s in states]  # [D, B, H]
        outs: list[list[np.ndarray]] = []
        for n in range(batch):
            st = [
                None if s is None else s[:, min(n, s.shape[1] - 1)] for s in states
            ]  # batch-1 states broadcast
            bias = None if b is None else b.reshape(dirs, 2 * g * hidden)
            if op == "LSTM":
                res = lstm_codes(arith, xc[:, n], w, r, bias, st[0], st[1], e)
            else:
                res = gru_codes(arith, xc[:, n], w, r, bias, st[0], e)
            outs.append(list(res))
        y = np.stack([o[0] for o in outs], axis=2)  # [T, D, B, H]
        finals = [np.stack([o[k] for o in outs], axis=1) for k in range(1, len(outs[0]))]  # [D, B, H]
        exps = [e.y, e.h, e.c]
        result = [torch.from_numpy(y.astype(np.float64) * 2.0**e.y).to(x.dtype)]
        for k, f in enumerate(finals, start=1):
            result.append(torch.from_numpy(f.astype(np.float64) * 2.0 ** exps[k]).to(x.dtype))
        if layout:
            result = [result[0].permute(2, 0, 1, 3)] + [t.transpose(0, 1) for t in result[1:]]
        return [t.contiguous().to(x.device) for t in result]

    return kernel
