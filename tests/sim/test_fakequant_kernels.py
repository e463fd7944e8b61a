"""FakeQuantSim's public kernel API (kernel / kernels / register_kernel / round_output); nothing outside
the simulator patches its private kernel table."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from graph_builders import make_model
from onnx import helper

import espq
from espq.errors import UnsupportedOpError
from espq.sim.fakequant import FakeQuantSim
from espq.sim.float import KERNELS

ROOT = Path(espq.__file__).parent


def _model():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    return make_model(nodes, [("x", [1, 3, 8, 8])], [("y", [1, 4, 8, 8])], {"w": w, "b": b})


def test_register_kernel_wraps_and_outputs_stay_rounded():
    rng = np.random.default_rng(1)
    data = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32) for _ in range(2)]
    qm = espq.quantize(_model(), data, target="esp32p4", progress=False)
    sim = FakeQuantSim(qm.graph, qm.plan, qm.target)
    x = {"x": torch.as_tensor(data[0])}
    with torch.no_grad():
        before = sim.run_torch(x)["y"].numpy()
    assert sim.kernel("Relu") is KERNELS["Relu"]  # no own Relu: the float registry's
    own = sim.kernels
    own.clear()  # a copy: the simulator keeps its kernels
    assert "Conv" in sim.kernels
    seen = []

    def doubled(node, inputs):
        seen.append(node.name)
        return [t * 2 for t in previous(node, inputs)]

    previous = sim.register_kernel("Conv", doubled)
    assert sim.kernel("Conv") is doubled and previous is not doubled
    with torch.no_grad():
        after = sim.run_torch(x)["y"].numpy()
    assert seen == ["conv"]
    e = int(qm.plan.tensors["y"].exponent)
    codes = after * 2.0**-e
    np.testing.assert_array_equal(codes, np.round(codes))  # still rounded to the output's grid
    top = (2**7 - 1) * 2.0**e
    inside = (before > 0) & (2 * before < top - 2.0**e)
    np.testing.assert_allclose(after[inside], 2 * before[inside], atol=2.0**e)
    with pytest.raises(UnsupportedOpError, match="'NoSuchOp'"):
        sim.kernel("NoSuchOp")


def test_nothing_outside_the_simulator_patches_its_private_kernels():
    pattern = re.compile(r"\._kernels\b|\._hook\b|\b_make_kernels\b|\._rounded_outputs\b|\b_load_kernels\b")
    allowed = {"sim/fakequant.py"}
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in ROOT.rglob("*.py")
        if str(p.relative_to(ROOT)) not in allowed
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_run_torch_keeps_autograd_only_when_asked():
    rng = np.random.default_rng(2)
    data = [rng.standard_normal((4, 3, 8, 8)).astype(np.float32)]
    qm = espq.quantize(_model(), data, target="esp32s3", progress=False)
    sim = FakeQuantSim(qm.graph, qm.plan, qm.target)
    x = torch.as_tensor(data[0]).requires_grad_()
    assert sim.run_torch({"x": x}, grad=True)["y"].requires_grad
    assert not sim.run_torch({"x": x})["y"].requires_grad
