"""Look-up tables (espq.sim.lut, lower.luts): entries, sizes, int16 nearest-entry semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from espq.errors import ConfigError, UnsupportedOpError
from espq.export.lower import ExportState, attach_luts
from espq.ir import Graph, Node
from espq.ir.graph import TensorInfo
from espq.ir.spec import QuantPlan, TensorSpec
from espq.sim.float.registry import KERNELS
from espq.sim.lut import build_table, int16_lut_kernel, lut16_lookup, lut_codes
from espq.targets import get_target

P4, S3 = get_target("esp32p4"), get_target("esp32s3")


def test_int8_sigmoid_table_matches_formula():
    t = build_table("Sigmoid", {}, [], -5, -7, 8, P4)
    assert t.shape == (256,)
    # entry k <-> input (k - 128) * 2^-5; output rounded half-even to 2^-7, saturated at 127
    for k in (0, 100, 128, 200, 255):
        y = 1 / (1 + math.exp(-(k - 128) / 32))
        assert t[k] == min(127, round(y * 128))
    assert t[0] == 2 and t[128] == 64 and t[255] == 126


def test_int8_clip_table_uses_rounded_bounds_and_half_up_on_s3():
    lo, hi = torch.tensor(-0.5), torch.tensor(1.0)
    t = build_table("Clip", {}, [lo, hi], -2, -2, 8, S3)
    x = np.arange(-128, 128) / 4
    np.testing.assert_array_equal(t, np.clip(x, -0.5, 1.0) * 4)


def test_int16_codes_and_lookup_nearest_entry():
    codes = lut_codes(16, 32)
    assert codes.size == 65536 // 32 + 1 and codes[0] == -32768 and codes[-1] == 32768
    table = np.arange(codes.size)  # entry index as value
    # q = -32768 + 16 is exactly half a step: P4 ties to even index (0), S3 rounds up (1)
    assert lut16_lookup(np.array([-32768 + 16]), table, P4)[0] == 0
    assert lut16_lookup(np.array([-32768 + 16]), table, S3)[0] == 1
    assert lut16_lookup(np.array([-32768 + 17, 32767]), table, P4).tolist() == [1, 2048]
    with pytest.raises(ConfigError):
        lut_codes(16, 24)


def test_int16_lut_kernel_reproduces_table():
    table = build_table("Tanh", {}, [], -12, -14, 16, P4, 32)
    tables = {"t": (table, -12, -14)}
    kernel = int16_lut_kernel(tables, P4, KERNELS["Tanh"])
    q = torch.tensor([-32768, -1000, 0, 15, 16, 17, 32767])
    x = q.to(torch.float32) * 2.0**-12
    y = kernel(Node("t", "Tanh", ["x"], ["y"]), [x])[0]
    expected = lut16_lookup(q.numpy(), table, P4) * 2.0**-14
    np.testing.assert_array_equal(y.numpy(), expected.astype(np.float32))
    other = kernel(Node("u", "Tanh", ["x"], ["y"]), [x])[0]  # a node without a table runs the base kernel
    np.testing.assert_allclose(other.numpy(), np.tanh(x.numpy()), rtol=1e-6)


def _state(op: str, qt: str, step: int, inits=None, inputs=("x",)) -> ExportState:
    g = Graph(
        [Node("n", op, list(inputs), ["y"])],
        {k: np.asarray(v, np.float32) for k, v in (inits or {}).items()},
        {k: TensorInfo(np.dtype(np.float32), (1, 8)) for k in ("x", "y")},
        ["x"], ["y"],
    )  # fmt: skip
    bits = 8 if qt == "S8" else 16
    specs = {"x": TensorSpec(bits, -5), "y": TensorSpec(bits, -6)}
    for k in inits or {}:
        specs[k] = TensorSpec(bits, -5)
    plan = QuantPlan("esp32p4", bits, {"n": qt}, specs)
    return ExportState.from_model(g, plan, P4, step)


def test_attach_luts_int8_and_int16():
    st = _state("Sigmoid", "S8", 32)
    assert attach_luts(st) == {}
    node = st.graph.nodes[0]
    assert node.op_type == "Sigmoid" and node.attrs["lut"] == "Sigmoid_lut_0"
    table, exp = st.luts["Sigmoid_lut_0"]
    assert table.size == 256 and exp == -6
    st16 = _state("Sigmoid", "S16", 32)
    int16 = attach_luts(st16)
    node = st16.graph.nodes[0]
    assert node.op_type == "LUT" and node.attrs["original_op_type"] == "Sigmoid"
    assert node.attrs["int16_lut_step"] == 32 and int16["n"][0].size == 2049 and int16["n"][1:] == (-5, -6)
    st0 = _state("Sigmoid", "S16", 0)
    assert attach_luts(st0) == {} and st0.graph.nodes[0].op_type == "Sigmoid" and not st0.luts


def test_attach_luts_prelu_scalar_only_and_gelu16_needs_table():
    scalar = _state("PRelu", "S8", 32, {"s": [0.25]}, ("x", "s"))
    attach_luts(scalar)
    assert "lut" in scalar.graph.nodes[0].attrs
    per_channel = _state("PRelu", "S8", 32, {"s": np.full(8, 0.25)}, ("x", "s"))
    attach_luts(per_channel)
    assert "lut" not in per_channel.graph.nodes[0].attrs
    with pytest.raises(UnsupportedOpError, match="Gelu"):
        attach_luts(_state("Gelu", "S16", 0))
