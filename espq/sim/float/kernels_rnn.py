"""Recurrent kernels with ONNX semantics: RNN, GRU, LSTM.

Directions forward/reverse/bidirectional, layout 0 (time-major) and 1 (batch-major), optional
bias, sequence_lens, initial states, clip, activations (with alpha/beta), GRU linear_before_reset
and LSTM peepholes/input_forget. Steps past a batch entry's sequence length output zeros and keep
its state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from espq.errors import UnsupportedOpError
from espq.ir.graph import Node
from espq.sim.float.registry import need, register

Tensor = torch.Tensor
Act = Callable[[Tensor], Tensor]


def _activation(name: str, alpha: float | None, beta: float | None) -> Act:
    n = name.lower()
    if n == "sigmoid":
        return torch.sigmoid
    if n == "tanh":
        return torch.tanh
    if n == "relu":
        return torch.relu
    if n == "hardsigmoid":
        a, b = 0.2 if alpha is None else alpha, 0.5 if beta is None else beta
        return lambda x: torch.clamp(a * x + b, 0, 1)
    if n == "leakyrelu":
        return lambda x: F.leaky_relu(x, 0.01 if alpha is None else alpha)
    if n == "thresholdedrelu":
        a = 1.0 if alpha is None else alpha
        return lambda x: torch.where(x > a, x, torch.zeros_like(x))
    if n == "scaledtanh":
        return lambda x: alpha * torch.tanh(beta * x)
    if n == "affine":
        return lambda x: alpha * x + beta
    if n == "elu":
        return lambda x: F.elu(x, 1.0 if alpha is None else alpha)
    if n == "softsign":
        return lambda x: x / (1 + x.abs())
    if n == "softplus":
        return F.softplus
    raise UnsupportedOpError(f"recurrent activation '{name}' is not supported")


def _activations(node: Node, defaults: list[str], num_dir: int) -> list[list[Act]]:
    names = node.attr("activations") or defaults * num_dir
    alphas = list(node.attr("activation_alpha") or [])
    betas = list(node.attr("activation_beta") or [])
    acts = []
    for i, name in enumerate(names):
        acts.append(
            _activation(name, alphas[i] if i < len(alphas) else None, betas[i] if i < len(betas) else None)
        )
    k = len(defaults)
    return [acts[d * k : (d + 1) * k] for d in range(num_dir)]


def _reverse_valid(x: Tensor, lens: Tensor) -> Tensor:
    """Reverse each batch entry's first lens[b] steps of time-major ``x`` [T, B, ...]."""
    steps = x.shape[0]
    t = torch.arange(steps, device=x.device).unsqueeze(1)  # [T, 1]
    L = lens.to(x.device).unsqueeze(0)  # [1, B]
    src = torch.where(t < L, L - 1 - t, t)  # [T, B]
    index = src.reshape(*src.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 0, index)


class _Common:
    """Inputs and attributes shared by RNN, GRU and LSTM, in time-major layout."""

    def __init__(self, node: Node, inputs: list[Tensor | None], gates: int):
        need(inputs, 3, node)
        self.layout = int(node.attr("layout", 0))
        x = inputs[0]
        self.x = x.transpose(0, 1) if self.layout else x  # [T, B, I]
        self.w, self.r = inputs[1].to(x.dtype), inputs[2].to(x.dtype)
        self.hidden = int(node.attr("hidden_size", self.r.shape[-1]))
        direction = node.attr("direction", "forward")
        self.dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        steps, batch = self.x.shape[:2]
        b = inputs[3] if len(inputs) > 3 else None
        self.b = None if b is None else b.to(x.dtype)
        lens = inputs[4] if len(inputs) > 4 else None
        self.lens = (
            torch.full((batch,), steps, dtype=torch.long) if lens is None else lens.to(torch.long).cpu()
        )
        h0 = inputs[5] if len(inputs) > 5 else None
        if h0 is not None and self.layout:
            h0 = h0.transpose(0, 1)
        self.h0 = h0
        self.clip = node.attr("clip")
        self.gates = gates

    def initial(self, state: Tensor | None, d: int) -> Tensor:
        if state is None:
            return self.x.new_zeros(self.x.shape[1], self.hidden)
        return state[d].to(self.x.dtype)

    def bias(self, d: int) -> tuple[Tensor, Tensor]:
        g, h = self.gates, self.hidden
        if self.b is None:
            z = self.x.new_zeros(g * h)
            return z, z
        return self.b[d, : g * h], self.b[d, g * h :]

    def clipped(self, v: Tensor) -> Tensor:
        return v if self.clip is None else torch.clamp(v, -float(self.clip), float(self.clip))

    def run(self, step: Callable[[Tensor, list[Tensor], int], list[Tensor]], states0: list[Tensor | None]):
        """Run every direction; ``step(x_t, states, d) -> new states`` (states[0] is H)."""
        steps, batch = self.x.shape[:2]
        ys, finals = [], []
        valid_t = torch.arange(steps).unsqueeze(1) < self.lens.unsqueeze(0)  # [T, B]
        for d, direction in enumerate(self.dirs):
            xs = _reverse_valid(self.x, self.lens) if direction == "reverse" else self.x
            states = [self.initial(s, d) for s in states0]
            outs = []
            for t in range(steps):
                new = step(xs[t], states, d)
                m = valid_t[t].to(self.x.device).unsqueeze(1)
                states = [torch.where(m, n, s) for n, s in zip(new, states)]
                outs.append(torch.where(m, states[0], torch.zeros_like(states[0])))
            y = torch.stack(outs)  # [T, B, H]
            if direction == "reverse":
                y = _reverse_valid(y, self.lens)
            ys.append(y)
            finals.append(states)
        y = torch.stack(ys, dim=1)  # [T, D, B, H]
        outs = [y.permute(2, 0, 1, 3) if self.layout else y]
        for k in range(len(states0)):
            s = torch.stack([f[k] for f in finals])  # [D, B, H]
            outs.append(s.transpose(0, 1) if self.layout else s)
        return outs


@register("RNN")
def _rnn(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    c = _Common(node, inputs, 1)
    acts = _activations(node, ["Tanh"], len(c.dirs))

    def step(x: Tensor, states: list[Tensor], d: int) -> list[Tensor]:
        wb, rb = c.bias(d)
        return [acts[d][0](c.clipped(x @ c.w[d].t() + states[0] @ c.r[d].t() + wb + rb))]

    return c.run(step, [c.h0])


@register("GRU")
def _gru(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """GRU, gates z, r, h; linear_before_reset selects where the reset gate applies."""
    c = _Common(node, inputs, 3)
    acts = _activations(node, ["Sigmoid", "Tanh"], len(c.dirs))
    lbr = int(node.attr("linear_before_reset", 0))
    H = c.hidden

    def step(x: Tensor, states: list[Tensor], d: int) -> list[Tensor]:
        f, g = acts[d]
        h = states[0]
        wb, rb = c.bias(d)
        w, r = c.w[d], c.r[d]
        xw = x @ w.t() + wb
        z = f(c.clipped(xw[:, :H] + h @ r[:H].t() + rb[:H]))
        rt = f(c.clipped(xw[:, H : 2 * H] + h @ r[H : 2 * H].t() + rb[H : 2 * H]))
        if lbr:
            hh = g(c.clipped(xw[:, 2 * H :] + rt * (h @ r[2 * H :].t() + rb[2 * H :])))
        else:
            hh = g(c.clipped(xw[:, 2 * H :] + (rt * h) @ r[2 * H :].t() + rb[2 * H :]))
        return [(1 - z) * hh + z * h]

    return c.run(step, [c.h0])


@register("LSTM")
def _lstm(node: Node, inputs: list[Tensor | None]) -> list[Tensor]:
    """LSTM, gates i, o, f, c; optional peepholes P (i, o, f) and input_forget coupling."""
    c = _Common(node, inputs, 4)
    acts = _activations(node, ["Sigmoid", "Tanh", "Tanh"], len(c.dirs))
    c0 = inputs[6] if len(inputs) > 6 else None
    if c0 is not None and c.layout:
        c0 = c0.transpose(0, 1)
    p = inputs[7] if len(inputs) > 7 else None
    couple = int(node.attr("input_forget", 0))
    H = c.hidden

    def step(x: Tensor, states: list[Tensor], d: int) -> list[Tensor]:
        f, g, h_act = acts[d]
        h, cell = states
        wb, rb = c.bias(d)
        gates = x @ c.w[d].t() + h @ c.r[d].t() + wb + rb
        gi, go, gf, gc = (gates[:, k * H : (k + 1) * H] for k in range(4))
        pi = po = pf = None
        if p is not None:
            pd = p[d].to(x.dtype)
            pi, po, pf = pd[:H], pd[H : 2 * H], pd[2 * H :]
        i = f(c.clipped(gi + (pi * cell if pi is not None else 0)))
        ft = 1 - i if couple else f(c.clipped(gf + (pf * cell if pf is not None else 0)))
        ct = g(c.clipped(gc))
        cell_new = ft * cell + i * ct
        o = f(c.clipped(go + (po * cell_new if po is not None else 0)))
        return [o * h_act(cell_new), cell_new]

    outs = c.run(step, [c.h0, c0])
    return outs
