"""Conv, ConvTranspose and pooling float kernels vs onnxruntime (1-D/2-D/3-D, batch > 1)."""

from __future__ import annotations

import pytest
from test_float_helpers import check_op, rand

CONV_CASES = [
    # (x shape, w shape, attrs)
    ((2, 3, 9, 8), (4, 3, 3, 3), {}),
    ((2, 3, 9, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 4, 9, 8), (4, 1, 3, 3), {"group": 4, "pads": [0, 1, 2, 1]}),
    ((2, 4, 9, 8), (6, 2, 3, 2), {"group": 2, "dilations": [2, 1]}),
    ((2, 3, 9, 8), (4, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((2, 3, 9, 8), (4, 3, 4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 3]}),
    ((2, 3, 9, 8), (4, 3, 3, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    ((3, 3, 12), (5, 3, 3), {"pads": [2, 1], "strides": [2]}),
    ((2, 2, 5, 6, 4), (3, 2, 3, 2, 2), {"pads": [1, 0, 1, 0, 1, 0]}),
]


@pytest.mark.parametrize("xs,ws,attrs", CONV_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv(xs, ws, attrs, bias):
    inputs = [rand(*xs), ("c", rand(*ws))]
    if bias:
        inputs.append(("c", rand(ws[0])))
    check_op("Conv", inputs, attrs)


CONVT_CASES = [
    ((2, 3, 5, 4), (3, 4, 3, 3), {}),
    ((2, 3, 5, 4), (3, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 3, 5, 4), (3, 4, 3, 3), {"strides": [2, 2], "output_padding": [1, 1]}),
    ((2, 4, 5, 4), (4, 2, 3, 2), {"group": 2, "strides": [2, 1], "dilations": [1, 2], "pads": [0, 1, 1, 0]}),
    ((2, 3, 5, 4), (3, 4, 3, 3), {"strides": [2, 2], "output_shape": [10, 9]}),
    ((2, 3, 5, 4), (3, 4, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((2, 3, 5, 4), (3, 4, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((2, 3, 7), (3, 2, 5), {"strides": [3], "output_padding": [2], "pads": [1, 2]}),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2]}),
]


@pytest.mark.parametrize("xs,ws,attrs", CONVT_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose(xs, ws, attrs, bias):
    inputs = [rand(*xs), ("c", rand(*ws))]
    if bias:
        group = attrs.get("group", 1)
        inputs.append(("c", rand(ws[1] * group)))
    check_op("ConvTranspose", inputs, attrs)


POOL_CASES = [
    ((2, 3, 9, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ((2, 3, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 3, 9, 8), {"kernel_shape": [3, 2], "strides": [2, 3], "ceil_mode": 1}),
    ((2, 3, 9, 8), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 2], "ceil_mode": 1}),
    ((2, 3, 9, 8), {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    ((2, 3, 9, 8), {"kernel_shape": [2, 2], "auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    ((2, 3, 12), {"kernel_shape": [3], "strides": [2], "pads": [1, 1]}),
    ((1, 2, 5, 6, 4), {"kernel_shape": [2, 3, 2], "strides": [1, 2, 2]}),
]


@pytest.mark.parametrize("xs,attrs", POOL_CASES)
def test_max_pool(xs, attrs):
    check_op("MaxPool", [rand(*xs)], attrs)


def test_max_pool_dilations():
    check_op(
        "MaxPool", [rand(2, 3, 9, 8)], {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]}
    )


@pytest.mark.parametrize("xs,attrs", POOL_CASES)
@pytest.mark.parametrize("count_include_pad", [0, 1])
def test_average_pool(xs, attrs, count_include_pad):
    check_op("AveragePool", [rand(*xs)], {**attrs, "count_include_pad": count_include_pad})


def test_average_pool_dilations():
    attrs = {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 1, 0, 1], "count_include_pad": 1}
    check_op("AveragePool", [rand(2, 3, 9, 8)], attrs, opset=19)


@pytest.mark.parametrize("p", [1, 2])
def test_lp_pool(p):
    check_op("LpPool", [rand(2, 3, 6, 6)], {"kernel_shape": [2, 2], "strides": [2, 2], "p": p})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 3, 7), (1, 2, 3, 4, 2)])
def test_global_pool(op, shape):
    check_op(op, [rand(*shape)])
