"""The op-facts table (espq/ir/op_facts.py): its queries, and that it says what ESP-DL's facts say."""

from __future__ import annotations

import dataclasses

import pytest

from espq.ir.op_facts import (
    CONV_LAYOUT_OPS,
    OP_FACTS,
    Axes,
    Buffer,
    Layout,
    Quant,
    facts,
    ops_with,
)
from espq.ir.ops import REDUCE_OPS


def test_ops_with_queries_the_table() -> None:
    assert CONV_LAYOUT_OPS == ops_with(layout=Layout.CONV)
    assert CONV_LAYOUT_OPS == {
        "Conv",
        "AveragePool",
        "GlobalAveragePool",
        "MaxPool",
        "GlobalMaxPool",
        "Resize",
        "DepthToSpace",
        "SpaceToDepth",
        "InsertZeros",
    }
    assert ops_with(axes=Axes.REDUCE) == set(REDUCE_OPS)
    assert ops_with(quant=Quant.ALIGN_TO_LARGEST) == {
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
    }
    # set-valued fields match by membership: Gelu is tabled at both widths, Relu only at int8
    assert {"Gelu", "Relu"} <= ops_with(lut_bits=8)
    assert "Gelu" in ops_with(lut_bits=16) and "Relu" not in ops_with(lut_bits=16)
    assert ops_with(layout=Layout.CONV, quant=Quant.PASSIVE) == {
        "MaxPool",
        "GlobalMaxPool",
        "DepthToSpace",
        "SpaceToDepth",
    }
    with pytest.raises(TypeError, match="no field 'layuot'"):
        ops_with(layuot=Layout.CONV)


def test_facts_are_frozen_data() -> None:
    f = facts("Clip")
    assert f is not None and f.shared_inputs == {1, 2} and f.shares_producer_spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.layout = Layout.ORIGINAL  # type: ignore[misc]
    with pytest.raises(TypeError):
        OP_FACTS["Foo"] = f  # type: ignore[index]
    assert facts("NoSuchOp") is None


def test_esp_dl_facts_encoded() -> None:
    # §2.5: the conv-like ops work channel-last; §4.4/§4.10: Add/Sub/Concat do not rescale
    assert {op for op in ("Add", "Sub", "Concat") if OP_FACTS[op].quant is Quant.ALIGN_TO_OUTPUT} == {
        "Add",
        "Sub",
        "Concat",
    }
    assert OP_FACTS["Resize"].aligned_inputs == (0,) and OP_FACTS["ScatterND"].aligned_inputs == (0, 2)
    # §3.3: int16 tables only for the smooth ops; the int16 module reads tables only for LUT and Gelu
    assert ops_with(reads_lut_bits=16) == {"LUT", "Gelu"}
    assert ops_with(lut_bits=16) == {
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Swish",
        "Elu",
        "Exp",
        "Log",
        "Sqrt",
        "Gelu",
    }
    # every op tabled at int8 is one the int8 module can read a table for
    assert ops_with(lut_bits=8) <= ops_with(reads_lut_bits=8)
    # §5.1: views and in-place ops
    assert ops_with(buffer=Buffer.VIEW) == {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
    assert len(ops_with(buffer=Buffer.INPLACE)) == 20
    # Softmax-like axis defaults are the last axis
    assert [OP_FACTS[op].axis_default for op in ("Softmax", "LogSoftmax", "LpNormalization", "Split")] == [
        -1,
        -1,
        -1,
        0,
    ]
    # a weighted op's weight/bias inputs; RNN fixed-exponent inputs
    assert OP_FACTS["MatMul"].weight_bias == (1, None) and OP_FACTS["LSTM"].fixed_exponent_inputs == {3, 6}


def test_only_axis_ops_carry_axis_information() -> None:
    for op, f in OP_FACTS.items():
        assert (f.axes is not Axes.NONE) == (f.layout is Layout.AXIS), op
        assert f.aligned_inputs is None or f.quant is Quant.ALIGN_TO_OUTPUT, op
