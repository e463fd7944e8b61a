"""fuse_gelu / fuse_rmsnorm / fuse_lpnorm (issue 18 item 3): decomposed GELU (erf, tanh), RMSNorm and
L1/L2 normalisation become ESP-DL's Gelu / RMSNormalization / LpNormalization, onnxruntime-equal; then
quantize -> export -> the integer runner equals fake-quant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.frontends.torch import export_torch
from espq.ir.onnx_io import graph_from_onnx
from espq.ir.passes import CANONICAL_PASSES, canonicalize, fuse_gelu, fuse_lpnorm, fuse_rmsnorm
from espq.sim.integer import IntegerRunner

try:
    from .test_passes_helpers import check_equivalent, ops
except ImportError:
    from test_passes_helpers import check_equivalent, ops


class Gelu(nn.Module):
    def __init__(self, approximate: str = "none", hand: str = "") -> None:
        super().__init__()
        self.fc, self.approximate, self.hand = nn.Linear(8, 8), approximate, hand

    def forward(self, x):
        x = self.fc(x)
        if self.hand == "hf_tanh":  # Hugging Face gelu_new: 0.5 * x first, Pow for the cube
            return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))
        if self.hand == "mul_erf":  # x * 0.5 * (1 + erf(x * 0.7071...))
            return x * 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2))))
        if self.hand == "wrong":  # erf(x / 2): not a GELU
            return 0.5 * x * (1 + torch.erf(x / 2.0))
        return nn.functional.gelu(x, approximate=self.approximate)


class RMSNorm(nn.Module):
    def __init__(self, form: str = "rsqrt", eps: float | None = 1e-6, gamma: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.rand(8) + 0.5) if gamma else None
        self.form, self.eps = form, eps

    def forward(self, x):
        x = self.fc(x)
        ms = x.pow(2).mean(-1, keepdim=True)
        if self.eps is not None:
            ms = ms + self.eps
        if self.form == "rsqrt":
            y = x * torch.rsqrt(ms)
        elif self.form == "reciprocal":
            y = x * torch.reciprocal(torch.sqrt(ms))
        else:
            y = x / torch.sqrt(ms)
        return y * self.w if self.w is not None else y


class LpNorm(nn.Module):
    def __init__(self, p: int = 2, eps: float = 1e-12) -> None:
        super().__init__()
        self.fc, self.p, self.eps = nn.Linear(8, 8), p, eps

    def forward(self, x):
        return nn.functional.normalize(self.fc(x), p=self.p, dim=-1, eps=self.eps)


def _graphs(module: nn.Module, without):
    torch.manual_seed(0)
    g = graph_from_onnx(export_torch(module.eval(), [(1, 4, 8)]))
    return canonicalize(g), canonicalize(g, passes=[p for p in CANONICAL_PASSES if p is not without])


@pytest.mark.parametrize(
    "module, approximate",
    [(Gelu(), None), (Gelu("tanh"), "tanh"), (Gelu(hand="hf_tanh"), "tanh"), (Gelu(hand="mul_erf"), None)],
)
def test_fuse_gelu(module, approximate):
    fused, plain = _graphs(module, fuse_gelu)
    assert ops(fused) == ["MatMul", "Add", "Gelu"] and len(ops(plain)) > 5
    assert fused.nodes[2].attrs.get("approximate") == approximate
    fused.opset = 20  # Gelu is an opset-20 op under onnxruntime
    check_equivalent(plain, fused, rtol=1e-4)


def test_gelu_lookalike_is_left_alone():
    fused, plain = _graphs(Gelu(hand="wrong"), fuse_gelu)
    assert ops(fused) == ops(plain) and "Erf" in ops(fused)


@pytest.mark.parametrize(
    "module, eps",
    [
        (RMSNorm("rsqrt"), 1e-6),
        (RMSNorm("reciprocal", eps=1e-5), 1e-5),
        (RMSNorm("div", eps=None), 0.0),
        (RMSNorm("div", gamma=False), 1e-6),
    ],
)
def test_fuse_rmsnorm(module, eps):
    fused, plain = _graphs(module, fuse_rmsnorm)
    assert ops(fused) == ["MatMul", "Add", "RMSNormalization"]
    rms = fused.nodes[2]
    assert rms.attrs["axis"] == 2 and rms.attrs["epsilon"] == pytest.approx(eps, rel=1e-6, abs=0)
    fused.opset = 23  # RMSNormalization is an opset-23 op
    check_equivalent(plain, fused, rtol=1e-4)


@pytest.mark.parametrize("p", [1, 2])
def test_fuse_lpnorm(p):
    fused, plain = _graphs(LpNorm(p), fuse_lpnorm)
    assert ops(fused) == ["MatMul", "Add", "LpNormalization"]
    assert fused.nodes[2].attrs == {"axis": 2, "p": p}
    check_equivalent(plain, fused, rtol=1e-5)


def test_lpnorm_with_a_large_eps_is_left_alone():
    fused, _ = _graphs(LpNorm(eps=0.5), fuse_lpnorm)  # eps changes the result: keep the chain
    assert "LpNormalization" not in ops(fused)


@pytest.mark.parametrize("target", ["esp32p4", "esp32s3"])
def test_fused_ops_export_and_run_exactly(tmp_path, target):
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.g, self.r, self.l = Gelu(), RMSNorm(), LpNorm()

        def forward(self, x):
            return self.l(self.r(self.g(x)))

    torch.manual_seed(0)
    data = [np.random.default_rng(0).standard_normal((8, 4, 8)).astype(np.float32)]
    qm = espq.quantize(Net().eval(), data, target=target, input_shape=[1, 4, 8], progress=False)
    assert {"Gelu", "RMSNormalization", "LpNormalization"} <= {n.op_type for n in qm.graph.nodes}
    path = tmp_path / "m.espdl"
    qm.export(path, export_test_values=True)
    x = data[0][:1]
    name = qm.graph.inputs[0]
    out = qm.graph.outputs[0]
    got = IntegerRunner(path).run({name: x}, outputs=[out])[out]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(qm.run({name: x})[out]))
