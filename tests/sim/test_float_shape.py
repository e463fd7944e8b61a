"""Shape, data-movement and indexing float kernels vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from test_float_helpers import check_op, rand


def i64(*v):
    return ("c", np.array(v, dtype=np.int64))


@pytest.mark.parametrize(
    "shape,target",
    [
        ((2, 3, 4), (6, 4)),
        ((2, 3, 4), (0, -1)),
        ((2, 3, 4), (-1,)),
        ((4, 6), (2, 0, -1)),
        ((2, 64, 1, 1), (2, 64)),
    ],
)
def test_reshape(shape, target):
    check_op("Reshape", [rand(*shape), i64(*target)])


def test_reshape_allowzero():
    check_op("Reshape", [rand(0, 3), i64(3, 0)], {"allowzero": 1})


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_flatten(axis):
    check_op("Flatten", [rand(2, 3, 4, 5)], {"axis": axis})


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [1], [1, -1]])
def test_squeeze(opset, axes):
    x = rand(2, 1, 3, 1)
    if axes is None:
        check_op("Squeeze", [x], opset=opset)
    elif opset < 13:
        check_op("Squeeze", [x], {"axes": axes}, opset=opset)
    else:
        check_op("Squeeze", [x, i64(*axes)], opset=opset)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [1, -1], [0, 3]])
def test_unsqueeze(opset, axes):
    x = rand(2, 3)
    if opset < 13:
        check_op("Unsqueeze", [x], {"axes": axes}, opset=opset)
    else:
        check_op("Unsqueeze", [x, i64(*axes)], opset=opset)


@pytest.mark.parametrize("perm", [None, [0, 2, 3, 1], [3, 1, 0, 2]])
def test_transpose(perm):
    check_op("Transpose", [rand(2, 3, 4, 5)], {} if perm is None else {"perm": perm})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4]] * 3
    for k, s in enumerate(shapes):
        s = list(s)
        s[axis] = k + 1
        shapes[k] = s
    check_op("Concat", [rand(*s) for s in shapes], {"axis": axis})


@pytest.mark.parametrize(
    "attrs,split,opset,n",
    [
        ({"axis": 1}, None, 13, 3),
        ({"axis": 1, "split": [1, 4, 1]}, None, 11, 3),
        ({"axis": -1}, [2, 3], 13, 2),
        ({"axis": 1, "num_outputs": 4}, None, 18, 4),
    ],
)
def test_split(attrs, split, opset, n):
    x = rand(2, 6, 5)
    inputs = [x] + ([i64(*split)] if split else [])
    check_op("Split", inputs, attrs, n_out=n, opset=opset)


@pytest.mark.parametrize(
    "starts,ends,axes,steps",
    [
        ([1], [3], [1], None),
        ([0, 1], [-1, 100], [0, 2], None),
        ([-1], [-100], [2], [-1]),
        ([4, 0], [0, 3], [2, 1], [-2, 2]),
        ([1], [2**62], None, None),
    ],
)
def test_slice_inputs(starts, ends, axes, steps):
    x = rand(3, 4, 6)
    inputs = [x, i64(*starts), i64(*ends)]
    if axes is not None or steps is not None:
        inputs.append(i64(*(axes or range(len(starts)))))
    if steps is not None:
        inputs.append(i64(*steps))
    check_op("Slice", inputs)


def test_slice_attrs_opset9():
    check_op("Slice", [rand(3, 4, 6)], {"starts": [1, 0], "ends": [3, -1], "axes": [0, 2]}, opset=9)


@pytest.mark.parametrize("shape,target", [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((2, 1, 4), (1, 5, 1))])
def test_expand(shape, target):
    check_op("Expand", [rand(*shape), i64(*target)])


@pytest.mark.parametrize("reps", [(1, 2, 3), (2, 1, 1)])
def test_tile(reps):
    check_op("Tile", [rand(2, 3, 4), i64(*reps)])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [(0, 1, 2, 1, 0, 2, 1, 0), (1, 0, 0, 0, 0, 0, 0, 3)])
def test_pad_inputs(mode, pads):
    inputs = [rand(2, 3, 4, 5), i64(*pads)]
    if mode == "constant":
        inputs.append(("c", np.array(1.5, dtype=np.float32)))
    check_op("Pad", inputs, {"mode": mode})


def test_pad_negative_and_axes():
    check_op("Pad", [rand(2, 3, 4, 5), i64(-1, 2, 1, -2), ("c", np.array(0.0, np.float32)), i64(1, 3)])


def test_pad_attr_opset2():
    check_op("Pad", [rand(2, 3, 4)], {"pads": [0, 1, 2, 0, 1, 0], "value": 2.0, "mode": "constant"}, opset=2)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_to_space(mode):
    check_op("DepthToSpace", [rand(2, 8, 3, 4)], {"blocksize": 2, "mode": mode})


def test_space_to_depth():
    check_op("SpaceToDepth", [rand(2, 3, 4, 6)], {"blocksize": 2})


@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"start": -2, "end": -1}])
def test_shape(attrs):
    check_op("Shape", [rand(2, 3, 4)], attrs)


def test_size():
    check_op("Size", [rand(2, 3, 4)])


@pytest.mark.parametrize("axis,idx", [(0, [[0, 2], [1, -1]]), (1, [2]), (-1, 1), (2, [[0], [3]])])
def test_gather(axis, idx):
    check_op("Gather", [rand(3, 4, 5), ("c", np.array(idx, dtype=np.int64))], {"axis": axis})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    idx = np.random.default_rng(axis + 5).integers(-3, 3, size=(3, 2, 3)).astype(np.int64)
    check_op("GatherElements", [rand(3, 3, 3), ("c", idx)], {"axis": axis})


@pytest.mark.parametrize("batch_dims,idx", [(0, [[0, 1], [2, 0]]), (0, [[1], [0]]), (1, [[1], [0], [2]])])
def test_gather_nd(batch_dims, idx):
    check_op("GatherND", [rand(3, 3, 4), ("c", np.array(idx, np.int64))], {"batch_dims": batch_dims})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd(reduction):
    idx = np.array([[0, 1], [2, 2], [0, 3]], np.int64)
    check_op("ScatterND", [rand(3, 4, 2), ("c", idx), rand(3, 2)], {"reduction": reduction})


def test_scatter_nd_rows():
    idx = np.array([[2], [0]], np.int64)
    check_op("ScatterND", [rand(3, 4), ("c", idx), rand(2, 4)])


@pytest.mark.parametrize("reduction", ["none", "add", "max"])
@pytest.mark.parametrize("axis", [0, 1])
def test_scatter_elements(reduction, axis):
    idx = np.array([[1, 0, 2], [0, 2, 1]], np.int64)
    check_op("ScatterElements", [rand(3, 3), ("c", idx), rand(2, 3)], {"axis": axis, "reduction": reduction})


@pytest.mark.parametrize(
    "start,limit,delta,dtype", [(0, 10, 3, np.int64), (1.0, -2.0, -0.5, np.float32), (5, 5, 1, np.int64)]
)
def test_range(start, limit, delta, dtype):
    check_op("Range", [("c", np.array(v, dtype)) for v in (start, limit, delta)])


@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([7], np.int64)])
def test_constant_of_shape(value):
    from onnx import numpy_helper

    attrs = {} if value is None else {"value": numpy_helper.from_array(value)}
    check_op("ConstantOfShape", [i64(2, 3)], attrs)


def test_nonzero():
    x = (rand(3, 4) > 0).astype(np.float32)
    check_op("NonZero", [x])


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_one_hot(axis):
    idx = ("c", np.array([[0, 2, -1], [5, 1, -4]], np.int64))
    check_op(
        "OneHot", [idx, ("c", np.array(4, np.int64)), ("c", np.array([0.5, 3.0], np.float32))], {"axis": axis}
    )


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 2])
def test_trilu(upper, k):
    inputs = [rand(2, 4, 5)] + ([] if k is None else [("c", np.array(k, np.int64))])
    check_op("Trilu", inputs, {"upper": upper})


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("axis", [0, -1])
def test_cumsum(exclusive, reverse, axis):
    check_op(
        "CumSum", [rand(3, 4), ("c", np.array(axis, np.int64))], {"exclusive": exclusive, "reverse": reverse}
    )


@pytest.mark.parametrize("batch_axis,time_axis", [(1, 0), (0, 1)])
def test_reverse_sequence(batch_axis, time_axis):
    x = rand(4, 4, 3)
    lens = ("c", np.array([1, 4, 2, 3], np.int64))
    check_op("ReverseSequence", [x, lens], {"batch_axis": batch_axis, "time_axis": time_axis})


def test_eye_like():
    check_op("EyeLike", [rand(3, 5)], {"k": 1})


@pytest.mark.parametrize(
    "attrs",
    [
        {"value_float": 2.5},
        {"value_floats": [1.0, -2.0]},
        {"value_int": 7},
        {"value_ints": [3, 4, 5]},
        {"value": "tensor"},
    ],
)
def test_constant(attrs):
    from onnx import numpy_helper

    if attrs.get("value") == "tensor":
        attrs = {"value": numpy_helper.from_array(rand(2, 3))}
    check_op("Constant", [], attrs)


def test_scatter_opset10():
    idx = np.array([[1, 0, 2], [0, 2, 1]], np.int64)
    check_op("Scatter", [rand(3, 3), ("c", idx), rand(2, 3)], {"axis": 1}, opset=10)
