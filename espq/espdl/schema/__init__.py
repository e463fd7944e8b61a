"""Slot numbers and enums of the `.espdl` FlatBuffers schema (``espdl.fbs`` beside this file).

Source: esp_dl_facts.md §1.4 / esp_ppq_facts.md §4.2. A field's *slot* is its id; its vtable byte
offset is ``4 + 2 * slot``. The union ``TypeInfo.value`` takes two ids (type byte, then offset).
``NUM_FIELDS`` is the field count passed to ``Builder.StartObject`` (what flatc-generated code uses).
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class AttributeType(IntEnum):
    UNDEFINED = 0
    FLOAT = 1
    INT = 2
    STRING = 3
    TENSOR = 4
    GRAPH = 5
    FLOATS = 6
    INTS = 7
    STRINGS = 8
    TENSORS = 9
    GRAPHS = 10
    TYPE_FBS = 11
    TYPE_FBSS = 12


class TensorDataType(IntEnum):
    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13


class DimensionValueType(IntEnum):
    UNKNOWN = 0
    VALUE = 1
    PARAM = 2


TYPE_INFO_TENSOR_TYPE = 1  # union TypeInfoValue member tensor_type (the only one the loader supports)

#: numpy dtype (little-endian) of each numeric TensorDataType (esp_dl_facts.md §2.4).
NUMPY_DTYPES: dict[int, np.dtype] = {
    TensorDataType.FLOAT: np.dtype("<f4"),
    TensorDataType.UINT8: np.dtype("u1"),
    TensorDataType.INT8: np.dtype("i1"),
    TensorDataType.UINT16: np.dtype("<u2"),
    TensorDataType.INT16: np.dtype("<i2"),
    TensorDataType.INT32: np.dtype("<i4"),
    TensorDataType.INT64: np.dtype("<i8"),
    TensorDataType.BOOL: np.dtype("?"),
    TensorDataType.FLOAT16: np.dtype("<f2"),
    TensorDataType.DOUBLE: np.dtype("<f8"),
    TensorDataType.UINT32: np.dtype("<u4"),
    TensorDataType.UINT64: np.dtype("<u8"),
}


class Model:
    IR_VERSION, OPSET_IMPORT, PRODUCER_NAME, PRODUCER_VERSION, DOMAIN = 0, 1, 2, 3, 4
    MODEL_VERSION, DOC_STRING, GRAPH, METADATA_PROPS, FUNCTIONS = 5, 6, 7, 8, 9
    NUM_FIELDS = 10


class Graph:
    NODE, NAME, INITIALIZER, DOC_STRING, INPUT, OUTPUT, VALUE_INFO = 0, 1, 2, 3, 4, 5, 6
    QUANTIZATION_ANNOTATION, TEST_INPUTS_VALUE, TEST_OUTPUTS_VALUE = 7, 8, 9
    NUM_FIELDS = 10


class Node:
    INPUT, OUTPUT, NAME, OP_TYPE, DOMAIN, ATTRIBUTE, DOC_STRING = 0, 1, 2, 3, 4, 5, 6
    NUM_FIELDS = 7


class Attribute:
    NAME, REF_ATTR_NAME, DOC_STRING, ATTR_TYPE, F, I, S, T, G, TP = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
    FLOATS, INTS, STRINGS, TENSORS, GRAPHS, TYPE_PROTOS = 10, 11, 12, 13, 14, 15
    NUM_FIELDS = 16


class Tensor:
    DIMS, DATA_TYPE, FLOAT_DATA, INT32_DATA, STRING_DATA, INT64_DATA, NAME = 0, 1, 2, 3, 4, 5, 6
    DOC_STRING, RAW_DATA, EXTERNAL_DATA, DATA_LOCATION, DOUBLE_DATA, UINT64_DATA, EXPONENTS = (
        7,
        8,
        9,
        10,
        11,
        12,
        13,
    )
    NUM_FIELDS = 14


#: Typed (non-raw) data vectors of a Tensor: slot -> element dtype.
TENSOR_TYPED_FIELDS: dict[str, tuple[int, np.dtype]] = {
    "float_data": (Tensor.FLOAT_DATA, np.dtype("<f4")),
    "int32_data": (Tensor.INT32_DATA, np.dtype("<i4")),
    "int64_data": (Tensor.INT64_DATA, np.dtype("<i8")),
    "double_data": (Tensor.DOUBLE_DATA, np.dtype("<f8")),
    "uint64_data": (Tensor.UINT64_DATA, np.dtype("<u8")),
}


class ValueInfo:
    NAME, VALUE_INFO_TYPE, DOC_STRING, EXPONENTS = 0, 1, 2, 3
    NUM_FIELDS = 4


class TypeInfo:
    VALUE_TYPE, VALUE, DENOTATION = 0, 1, 2  # union = type byte (slot 0) + offset (slot 1)
    NUM_FIELDS = 3


class TensorTypeAndShape:
    ELEM_TYPE, SHAPE = 0, 1
    NUM_FIELDS = 2


class TensorShape:
    DIM = 0
    NUM_FIELDS = 1


class Dimension:
    VALUE, DENOTATION = 0, 1
    NUM_FIELDS = 2


class DimensionValue:
    DIM_TYPE, DIM_VALUE, DIM_PARAM = 0, 1, 2
    NUM_FIELDS = 3


class StringStringEntry:
    KEY, VALUE = 0, 1
    NUM_FIELDS = 2


class OperatorSetId:
    DOMAIN, VERSION = 0, 1
    NUM_FIELDS = 2
