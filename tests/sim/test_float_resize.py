"""Resize / Upsample float kernels vs onnxruntime: modes, coordinate transforms, scales and sizes."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import check_op, rand

COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "half_pixel_symmetric"]
EMPTY = ("c", np.zeros(0, np.float32))


def f32(*v):
    return ("c", np.array(v, np.float32))


def i64(*v):
    return ("c", np.array(v, np.int64))


@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 0.5, 1.5), (1, 1, 3, 0.6)])
def test_resize_nearest_scales(coord, nearest_mode, scales):
    attrs = {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest_mode}
    check_op("Resize", [rand(2, 3, 5, 6), EMPTY, f32(*scales)], attrs, opset=19)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 0.5, 1.5)])
def test_resize_linear_cubic_scales(mode, coord, scales):
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    check_op("Resize", [rand(2, 3, 5, 6), EMPTY, f32(*scales)], attrs, opset=19)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("sizes", [(2, 3, 9, 4), (2, 3, 1, 12)])
def test_resize_sizes(mode, sizes):
    attrs = {"mode": mode, "coordinate_transformation_mode": "half_pixel"}
    check_op("Resize", [rand(2, 3, 5, 6), EMPTY, EMPTY, i64(*sizes)], attrs, opset=19)


@pytest.mark.parametrize("exclude_outside,a", [(1, -0.5), (0, -0.5), (1, -0.75)])
def test_resize_cubic_options(exclude_outside, a):
    attrs = {"mode": "cubic", "exclude_outside": exclude_outside, "cubic_coeff_a": a}
    check_op("Resize", [rand(1, 2, 5, 6), EMPTY, f32(1, 1, 1.7, 0.8)], attrs, opset=19)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_tf_crop_and_resize(mode):
    roi = f32(0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2)
    attrs = {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize", "extrapolation_value": 9.0}
    check_op("Resize", [rand(1, 2, 5, 6), roi, EMPTY, i64(1, 2, 4, 7)], attrs, opset=19)


@pytest.mark.parametrize("policy", ["not_larger", "not_smaller"])
def test_resize_keep_aspect_ratio_axes(policy):
    attrs = {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": policy}
    check_op("Resize", [rand(1, 2, 5, 6), EMPTY, EMPTY, i64(8, 8)], attrs, opset=19)


def test_resize_opset11_sizes_with_empty_scales():
    attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
    check_op("Resize", [rand(2, 3, 4, 4), EMPTY, EMPTY, i64(2, 3, 8, 8)], attrs, opset=11)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 2, 3)])
def test_resize_opset10(mode, scales):
    check_op("Resize", [rand(2, 3, 4, 5), f32(*scales)], {"mode": mode}, opset=10)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_opset9(mode):
    check_op("Upsample", [rand(2, 3, 4, 5), f32(1, 1, 2, 3)], {"mode": mode}, opset=9)


def test_upsample_opset7_attr():
    check_op("Upsample", [rand(2, 3, 4, 5)], {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 2.0]}, opset=7)
