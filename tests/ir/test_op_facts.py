"""The op-facts table (espq/ir/op_facts.py): its queries, and that it says what ESP-DL's facts say."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

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
    # §4.9: the conversion ops, whose activation dtypes differ between input and output
    assert ops_with(converts=True) == {"QuantizeLinear", "DequantizeLinear", "RequantizeLinear"}
    # a weighted op's weight/bias inputs; RNN fixed-exponent inputs
    assert OP_FACTS["MatMul"].weight_bias == (1, None) and OP_FACTS["LSTM"].fixed_exponent_inputs == {3, 6}


def test_only_axis_ops_carry_axis_information() -> None:
    for op, f in OP_FACTS.items():
        assert (f.axes is not Axes.NONE) == (f.layout is Layout.AXIS), op
        assert f.aligned_inputs is None or f.quant is Quant.ALIGN_TO_OUTPUT, op


# --------------------------------------------------------------- exporter and runner agree on layouts
def _conv_then(op: str) -> onnx.ModelProto:
    """x [1,2,4,5] -> Conv(3 channels, 1x1) -> ``op`` -> graph output y: the last op's input is NHWC."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(-1, 1, (3, 2, 1, 1)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0.1, -0.2, 0.3], np.float32), "b"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv")]
    if op == "Pad":
        inits.append(numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 1, 0, 2], np.int64), "pads"))
        nodes.append(helper.make_node("Pad", ["c", "pads"], ["y"], name="last"))
        out_shape = [1, 4, 5, 7]
    elif op == "Slice":
        inits += [
            numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("s", [1]), ("e", [4]), ("a", [3]))
        ]
        nodes.append(helper.make_node("Slice", ["c", "s", "e", "a"], ["y"], name="last"))
        out_shape = [1, 3, 4, 3]
    else:  # Gather rows 2 and 0 along H
        inits.append(numpy_helper.from_array(np.array([2, 0], np.int64), "i"))
        nodes.append(helper.make_node("Gather", ["c", "i"], ["y"], name="last", axis=2))
        out_shape = [1, 3, 2, 5]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return m


def test_exporter_and_runner_share_layout_sets() -> None:
    from espq.export.lower import channel_last
    from espq.sim.integer import layout_replay as io

    assert channel_last.CONV_LIKE is io.CONV_LIKE is CONV_LAYOUT_OPS
    assert channel_last.UNARY | channel_last.BROADCAST | channel_last.AXIS_OPS == io._INHERIT


@pytest.mark.parametrize("op", ["Pad", "Slice", "Gather"])
@pytest.mark.parametrize(("target", "bits"), [("c", 8), ("esp32p4", 16)])
def test_axis_op_after_conv_as_graph_output(tmp_path, op: str, target: str, bits: int) -> None:
    """The exporter keeps Pad/Slice/Gather channel-last after a Conv (remapping their axes); the runner's
    replay did not list them, so it returned the NHWC tensor as if it were NCHW (fuzz regressions
    Conv_Pad_c_s8_460, AveragePool_Pad_esp32p4_s16_49: wrong shape or 6/64 codes off by up to 39)."""
    import espq

    rng = np.random.default_rng(1)
    calib = [rng.standard_normal((1, 2, 4, 5)).astype(np.float32) for _ in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qm = espq.quantize(_conv_then(op), calib, target=target, bits=bits, progress=False)
    path = tmp_path / "m.espdl"
    qm.export(path, export_config=False)
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    ours = qm.run(x)["y"]
    chip = espq.run_espdl(path, x)["y"]
    assert (
        chip.shape == ours.shape == {"Pad": (1, 4, 5, 7), "Slice": (1, 3, 4, 3), "Gather": (1, 3, 2, 5)}[op]
    )
    e = qm.plan.tensors["y"].exponent
    diff = np.abs(np.rint(ours / 2.0**e) - np.rint(chip / 2.0**e))
    assert diff.max() <= (0 if bits == 8 else 1)
    assert np.abs(ours).max() > 0.1  # not a trivially zero output


# ------------------------------------------------------------------------------------- completeness
def test_every_op_has_kernels_layout_and_quant_rule() -> None:
    """Every op in the table has a float kernel, an integer kernel (or is marked as not an ESP-DL op),
    a layout family and a quantization rule; every ESP-DL op of the target op table is in the table."""
    from espq.sim.float.executor import load_kernels as load_float_kernels
    from espq.sim.float.registry import KERNELS
    from espq.sim.integer.base import INT_KERNELS
    from espq.sim.integer.runner import load_kernels as load_integer_kernels
    from espq.targets.ops_table import OP_TABLE

    load_float_kernels()
    load_integer_kernels()
    assert len(OP_FACTS) == 93  # 71 ESP-DL ops + 22 that the float side or the layout rules name
    for op, f in OP_FACTS.items():
        assert op in KERNELS, f"{op}: no float kernel"
        assert isinstance(f.layout, Layout) and isinstance(f.quant, Quant), op
        if f.esp_dl:
            assert op in INT_KERNELS, f"{op}: no integer kernel"
            assert op in OP_TABLE, f"{op}: marked as an ESP-DL op but not in targets.OP_TABLE"
        else:
            assert op not in INT_KERNELS and op not in OP_TABLE and f.note, op
    assert set(OP_TABLE) == ops_with(esp_dl=True)
    assert len(OP_TABLE) == 71


def test_target_op_table_agrees_with_the_quantization_rules() -> None:
    """targets.OP_TABLE's exponent rules (a kernel that does not rescale) are what the chip-independent
    rule says: passive and aligned-to-output ops share one exponent, comparisons align their inputs,
    Softmax-like ops have float outputs."""
    from espq.targets.base import ExponentRule
    from espq.targets.ops_table import OP_TABLE

    equal = {Quant.PASSIVE, Quant.PASSIVE_VALUE, Quant.ALIGN_TO_OUTPUT}
    for op, spec in OP_TABLE.items():
        q = OP_FACTS[op].quant
        assert (spec.exponent_rule is ExponentRule.EQUAL) == (q in equal), op
        assert (spec.exponent_rule is ExponentRule.EQUAL_INPUTS) == (q is Quant.ALIGN_TO_LARGEST), op
        assert spec.bool_output == (q is Quant.ALIGN_TO_LARGEST), op
        assert spec.float_output == (q is Quant.FLOAT_OUTPUT), op


def test_quant_rules_are_views_of_the_table() -> None:
    from espq.ir import quant_rules as rules

    assert rules.PASSIVE_OPS == ops_with(quant=Quant.PASSIVE) | ops_with(quant=Quant.PASSIVE_VALUE)
    assert rules.ALIGN_TO_OUTPUT == {
        "Add": None,
        "Sub": None,
        "Concat": None,
        "ScatterND": (0, 2),
        "Resize": (0,),
    }
    assert rules.WEIGHTED_OPS == {"Conv": (1, 2), "Gemm": (1, 2), "MatMul": (1, None)}
    assert rules.RNN_OPS == {"GRU", "LSTM"} and rules.RELU_FUSION_HOSTS == {"Conv", "Gemm", "MatMul"}
    assert rules.INDEX_INPUTS["Slice"] == {1, 2, 3, 4} and len(rules.INDEX_INPUTS) == 25
