"""int16 activations that the chip computes in float32 (issue 18 item 4): the exporter warns, `espq inspect`
lists them and the latency model prices them as float work; LUT ops and int8 tables do not count."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import espq
from espq.espdl.inspect import format_inspect, inspect_model
from espq.export import export_model
from espq.targets.cost import float_math_nodes, node_costs


class SigmoidNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.c2(torch.sigmoid(self.c1(x)) + nn.functional.leaky_relu(self.c1(x), 0.1))


@pytest.fixture(scope="module")
def models() -> dict[int, espq.QuantizedModel]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((2, 3, 6, 6)).astype(np.float32)]
    return {
        b: espq.quantize(SigmoidNet().eval(), data, target="esp32p4", bits=b, input_shape=[1, 3, 6, 6],
                         progress=False)
        for b in (8, 16)
    }  # fmt: skip


def _export(qm, path, step):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = export_model(qm, path, int16_lut_step=step, export_config=False)
    return model, [str(w.message) for w in caught if "float32 on the chip" in str(w.message)]


def test_int16_without_tables_warns_and_is_listed(models, tmp_path):
    model, msgs = _export(models[16], tmp_path / "a.espdl", 0)
    slow = {model.graph.node(n).op_type for n in float_math_nodes(model)}
    assert slow == {"Sigmoid", "LeakyRelu"}
    assert len(msgs) == 1 and msgs[0].startswith("2 int16 activation(s)")
    assert "exports 1 of them as bit-exact LUT ops" in msgs[0]  # Sigmoid can be tabled, LeakyRelu cannot
    d = inspect_model(model)
    assert len(d["float_math_nodes"]) == 2
    assert "float math:  2 integer activation(s)" in format_inspect(d)


def test_int16_luts_leave_only_the_untabled_op(models, tmp_path):
    model, msgs = _export(models[16], tmp_path / "b.espdl", 32)
    assert [model.graph.node(n).op_type for n in float_math_nodes(model)] == ["LeakyRelu"]
    assert len(msgs) == 1 and msgs[0].startswith("1 int16 activation(s)") and "run them at 8 bits" in msgs[0]
    assert "LUT" in [n.op_type for n in model.graph.nodes]


def test_int8_tables_are_not_float_math(models, tmp_path):
    model, msgs = _export(models[8], tmp_path / "c.espdl", 32)
    assert float_math_nodes(model) == [] and msgs == []
    assert "float math" not in format_inspect(inspect_model(model))
    # the same int8 file with one table dropped: that activation computes in float on the chip
    node = next(n for n in model.graph.nodes if n.op_type == "Sigmoid")
    del node.attributes["lut"]
    assert float_math_nodes(model) == [node.name]
    cost = next(c for c in node_costs(model) if c.name == node.name)
    assert cost.float_fallback and cost.quant_type == "S8"
