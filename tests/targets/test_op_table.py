"""The op support table and the attribute rules (facts esp_dl §3.1, §3.2, esp_ppq §2.2, §2.7)."""

from __future__ import annotations

import numpy as np

from espq.ir.graph import Graph, Node, TensorInfo
from espq.targets import (
    EQUAL_EXPONENT_OPS,
    NONNEGATIVE_SHIFT_OPS,
    OP_TABLE,
    QuantType,
    get_target,
    supported_ops_markdown,
)
from espq.targets import rules as r

# esp_dl §3.1, in the order the facts list them
REGISTERED = """
Conv Add Sub Mul Div Pow Mod Resize GlobalAveragePool AveragePool Concat Sigmoid Tanh Relu LeakyRelu
HardSigmoid HardSwish Gelu LUT Gemm QuantizeLinear DequantizeLinear RequantizeLinear PRelu Clip
Flatten Reshape Transpose Exp Log Sqrt Squeeze Unsqueeze Softmax LogSoftmax MaxPool Slice Pad MatMul
Neg SpaceToDepth Split Gather Elu Greater GreaterOrEqual Equal Less LessOrEqual ReverseSequence
ScatterND Identity Swish ReduceL1 ReduceL2 ReduceMin ReduceMax ReduceSum ReduceProd ReduceMean
ReduceSumSquare ReduceLogSum ReduceLogSumExp GRU LSTM DepthToSpace StreamingCache InsertZeros
LayerNormalization LpNormalization RMSNormalization
""".split()


def test_registered_ops():
    assert len(REGISTERED) == 71
    assert set(OP_TABLE) == set(REGISTERED)
    for op in ("Max", "Min", "And", "Or", "Xor", "Not", "ConvTranspose", "Shape", "Cast"):
        assert op not in OP_TABLE


def test_quant_types():
    for op in ("Conv", "Gemm", "MatMul", "MaxPool", "Resize", "Gelu", "Equal", "ReverseSequence"):
        assert OP_TABLE[op].quant_types == {QuantType.S8, QuantType.S16}, op
    for op in (
        "Add",
        "Mul",
        "Concat",
        "AveragePool",
        "Sigmoid",
        "Softmax",
        "Reshape",
        "GRU",
        "LayerNormalization",
    ):
        assert OP_TABLE[op].quant_types == {QuantType.S8, QuantType.S16, QuantType.F32}, op
    p4 = get_target("esp32p4")
    assert p4.supports("Conv", "S8") and p4.supports("Conv", "S16") and not p4.supports("Conv", "F32")
    assert p4.supports("Add", QuantType.F32) and not p4.supports("Max", "S8")


def test_flags():
    assert {op for op, s in OP_TABLE.items() if s.float_output} == {"Softmax", "LogSoftmax"}
    assert {op for op, s in OP_TABLE.items() if s.bool_output} == {
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
    }
    # registered ops ESP-PPQ leaves out of quant_operation_types (esp_ppq §2.2) and that may appear in a model
    assert {op for op, s in OP_TABLE.items() if s.default_float} == {"Pow", "Log", "Sqrt"}
    assert NONNEGATIVE_SHIFT_OPS == {"Conv", "Gemm", "MatMul", "Mul"}
    assert {"Add", "Sub", "Concat", "MaxPool", "Reshape", "Transpose"} <= EQUAL_EXPONENT_OPS
    assert not {"Mul", "AveragePool", "Conv", "Sigmoid", "Softmax", "Equal"} & EQUAL_EXPONENT_OPS
    assert OP_TABLE["Conv"].param_inputs == (1, 2) and OP_TABLE["Reshape"].param_inputs == (1,)


def test_markdown():
    md = supported_ops_markdown()
    lines = md.strip().splitlines()
    assert len(lines) == 2 + 71
    assert lines[0].startswith("| op | p4 (esp32p4, esp32s31) | s3 (esp32s3) | c (")
    conv = next(line for line in lines if line.startswith("| Conv |"))
    cells = [c.strip() for c in conv.strip("|").split("|")]
    assert cells[1] == cells[2] == "S8, S16"
    assert cells[3] == "S8, S16 (not verified on chip)"
    softmax = next(line for line in lines if line.startswith("| Softmax |"))
    assert "S8, S16, F32" in softmax and "float32 output" in softmax
    assert "(float by default)" in next(line for line in lines if line.startswith("| Sqrt |"))


# ----------------------------------------------------------------------------- rules
def _graph(
    node: Node,
    shapes: dict[str, tuple[int, ...]],
    consts: dict[str, np.ndarray] | None = None,
    opset: int = 18,
) -> Graph:
    values = {k: TensorInfo(np.dtype(np.float32), v) for k, v in shapes.items()}
    inits = dict(consts or {})
    return Graph([node], inits, values, [node.inputs[0]], node.outputs, opset=opset)


def _conv(weight_shape: tuple[int, ...], group: int, **attrs) -> tuple[Node, Graph]:
    node = Node("c", "Conv", ["x", "w"], ["y"], {"group": group, **attrs})
    cin = weight_shape[1] * group
    g = _graph(node, {"x": (1, cin, 8, 8)}, {"w": np.zeros(weight_shape, np.float32)})
    return node, g


def test_conv_rules():
    assert r.conv_group(*_conv((8, 8, 3, 3), 1)) is None
    assert r.conv_group(*_conv((16, 1, 3, 3), 16)) is None  # depthwise
    grouped = r.conv_group(*_conv((8, 4, 3, 3), 2))
    assert grouped is not None and "grouped" in grouped.reason and "split" in grouped.fix
    mult = r.conv_group(*_conv((32, 1, 3, 3), 16))
    assert mult is not None and "multiplier 2" in mult.reason
    assert r.conv_rank(*_conv((8, 8, 3, 3, 3), 1)) is not None
    assert r.conv_rank(*_conv((8, 8, 3), 1)) is None
    assert r.explicit_pads(*_conv((8, 8, 3, 3), 1, auto_pad="SAME_UPPER")) is not None
    assert r.explicit_pads(*_conv((8, 8, 3, 3), 1, auto_pad="VALID")) is None
    assert r.fused_activation(*_conv((8, 8, 3, 3), 1, activation="Relu")) is None
    assert r.fused_activation(*_conv((8, 8, 3, 3), 1, activation="LeakyRelu")) is not None


def test_gemm_rules():
    def gemm(**attrs):
        node = Node("g", "Gemm", ["a", "b", "c"], ["y"], attrs)
        return node, _graph(node, {"a": (1, 4)}, {"b": np.zeros((4, 3)), "c": np.zeros(3)})

    assert all(rule(*gemm()) is None for rule in (r.gemm_trans_a, r.gemm_alpha_beta, r.gemm_bias_shape))
    assert r.gemm_trans_a(*gemm(transA=1)) is not None
    issue = r.gemm_alpha_beta(*gemm(alpha=2.0))
    assert issue is not None and "alpha=2" in issue.reason and "fold" in issue.fix
    node = Node("g", "Gemm", ["a", "b", "c"], ["y"])
    g = _graph(node, {"a": (2, 4)}, {"b": np.zeros((4, 3)), "c": np.zeros((2, 3))})
    assert r.gemm_bias_shape(node, g) is not None


def _resize(attrs: dict, scales: list[float] | None = None, sizes: list[int] | None = None, opset: int = 18):
    consts = {}
    inputs = ["x", "", "", ""]
    if scales is not None:
        consts["scales"] = np.array(scales, np.float32)
        inputs[2] = "scales"
    if sizes is not None:
        consts["sizes"] = np.array(sizes, np.int64)
        inputs[3] = "sizes"
    node = Node("rs", "Resize", inputs, ["y"], attrs)
    return node, _graph(node, {"x": (1, 3, 8, 8)}, consts, opset=opset)


def test_resize_rules():
    ok_nearest = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    assert r.resize_mode(*_resize(ok_nearest, [1, 1, 2, 2])) is None
    assert r.resize_mode(*_resize({"mode": "cubic"}, [1, 1, 2, 2])).reason.startswith("Resize mode 'cubic'")
    # ONNX defaults (half_pixel, round_prefer_floor) equal floor(dst/scale) for integer up-scales only
    assert r.resize_mode(*_resize({"mode": "nearest"}, [1, 1, 2, 2])) is None
    assert r.resize_mode(*_resize({"mode": "nearest"}, sizes=[1, 3, 24, 24])) is None
    assert r.resize_mode(*_resize({"mode": "nearest"}, [1, 1, 1.5, 1.5])) is not None
    assert r.resize_mode(*_resize({"mode": "linear"}, [1, 1, 2, 2])) is None
    assert (
        r.resize_mode(*_resize({"mode": "linear", "coordinate_transformation_mode": "align_corners"})) is None
    )
    assert (
        r.resize_mode(*_resize({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}))
        is not None
    )
    roi = r.resize_mode(*_resize({"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize"}))
    assert roi is not None and "roi" in roi.reason
    assert r.resize_mode(*_resize({"mode": "linear", "antialias": 1})) is not None
    assert r.resize_mode(*_resize(ok_nearest, [1, 1, 2, 2], opset=10)) is not None


def test_other_rules():
    pad = Node("p", "Pad", ["x", "pads"], ["y"], {"mode": "wrap"})
    g = _graph(pad, {"x": (1, 3, 4, 4)}, {"pads": np.zeros(8, np.int64)})
    assert "wrap" in r.pad_mode(pad, g).reason
    pad.attrs["mode"] = "reflect"
    assert r.pad_mode(pad, g) is None

    gru = Node("gru", "GRU", ["x", "W", "R"], ["y"], {"hidden_size": 4})
    g = _graph(gru, {"x": (5, 1, 3)})
    assert "linear_before_reset" in r.gru_linear_before_reset(gru, g).reason
    gru.attrs["linear_before_reset"] = 1
    assert r.gru_linear_before_reset(gru, g) is None

    avg = Node("ap", "AveragePool", ["x"], ["y"], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    g = _graph(avg, {"x": (1, 3, 8, 8)})
    assert r.avgpool_count_include_pad(avg, g) is not None
    avg.attrs["count_include_pad"] = 1
    assert r.avgpool_count_include_pad(avg, g) is None

    mp = Node("mp", "MaxPool", ["x"], ["y"], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1})
    assert r.pool_ceil_mode(mp, _graph(mp, {"x": (1, 3, 8, 8)})) is None  # 8 is even: ceil == floor
    assert r.pool_ceil_mode(mp, _graph(mp, {"x": (1, 3, 9, 9)})) is not None
    mp3 = Node("mp", "MaxPool", ["x"], ["y"], {"kernel_shape": [2, 2, 2]})
    assert r.pool_rank(mp3, _graph(mp3, {"x": (1, 3, 4, 4, 4)})) is not None

    mm = Node("mm", "MatMul", ["a", "b"], ["y"])
    assert r.matmul_rank(mm, _graph(mm, {"a": (1, 2, 3, 4, 5), "b": (5, 6)})) is not None
    assert r.matmul_rank(mm, _graph(mm, {"a": (2, 3, 4, 5), "b": (5, 6)})) is None
