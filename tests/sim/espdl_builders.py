"""Helpers for the integer-runner tests: tiny in-memory `.espdl` models, the index of Espressif's op tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from espq.espdl.model import EspdlGraph, EspdlModel, EspdlNode, EspdlTensor, EspdlValueInfo
from espq.espdl.schema import TensorDataType

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
OPTESTS = SHARED / "espdl-optests"
ZOO = SHARED / "espdl-zoo"

CODES = {
    np.dtype(np.int8): TensorDataType.INT8,
    np.dtype(np.int16): TensorDataType.INT16,
    np.dtype(np.int32): TensorDataType.INT32,
    np.dtype(np.int64): TensorDataType.INT64,
    np.dtype(np.float32): TensorDataType.FLOAT,
    np.dtype(np.bool_): TensorDataType.BOOL,
}


def vi(name: str, dtype, shape: list[int], exponent: int = 0) -> EspdlValueInfo:
    """A ValueInfo of ``dtype`` (numpy dtype) with one exponent."""
    return EspdlValueInfo(name, int(CODES[np.dtype(dtype)]), list(shape), [exponent])


def init(
    name: str, values, dtype, exponents: list[int] | int = 0, layout: str = "", dims: list[int] | None = None
) -> EspdlTensor:
    """An initializer (``layout`` e.g. ``"NHWC"`` becomes the ``layout ==> ...`` doc string; ``dims``
    overrides the stored dims, the bytes stay ``values`` in C order)."""
    exps = [exponents] if isinstance(exponents, int) else list(exponents)
    doc = f"layout ==> {layout}" if layout else ""
    t = EspdlTensor.from_array(name, np.asarray(values), int(CODES[np.dtype(dtype)]), exps, doc)
    if dims is not None:
        t.dims = list(dims)
    return t


def model(
    nodes: list[EspdlNode],
    inputs: list[EspdlValueInfo],
    outputs: list[EspdlValueInfo],
    inits: list[EspdlTensor] = (),
    values: list[EspdlValueInfo] = (),
    target: str | None = "esp32p4",
) -> EspdlModel:
    """A model whose ValueInfos are ``inputs + outputs + values`` (every activation needs one)."""
    graph = EspdlGraph(
        name="t",
        nodes=list(nodes),
        initializers={t.name: t for t in inits},
        inputs=list(inputs),
        outputs=list(outputs),
        value_info=[*inputs, *outputs, *values],
    )
    return EspdlModel(graph=graph, metadata_props={"target": target} if target else {})


def node(op: str, inputs: list[str], outputs: list[str], **attrs) -> EspdlNode:
    """A node named after its op; ``quant_type`` defaults to S8."""
    attrs.setdefault("quant_type", "S8")
    return EspdlNode(
        name=f"{op}_{'_'.join(outputs)}", op_type=op, inputs=inputs, outputs=outputs, attributes=attrs
    )


def conv_weight(
    name: str, w_onnx: np.ndarray, exponents: list[int] | int, blocked: bool = False, dtype=np.int8
) -> EspdlTensor:
    """A regular conv / Gemm filter [N, C, kH, kW] stored like ESP-PPQ does: dims [kH, kW, C, N]; bytes
    N-H-W-C (C targets, ``NHWC``) or, with ``blocked``, blocks of 16 channels H-W-C-(16) followed by
    the N mod 16 leftover channels in N-H-W-C order (``(N/16)HWC16[_UNALIGNED]``, P4/S3 int8)."""
    n, c, kh, kw = w_onnx.shape
    plain = w_onnx.transpose(0, 2, 3, 1)
    if blocked:
        na = n // 16 * 16
        head = w_onnx[:na].reshape(n // 16, 16, c, kh, kw).transpose(0, 3, 4, 2, 1).reshape(-1)
        data = np.concatenate([head, plain[na:].reshape(-1)])
        layout = "(N/16)HWC16" + ("_UNALIGNED" if n % 16 else "")
    else:
        data, layout = plain.reshape(-1), "NHWC"
    return init(name, data, dtype, exponents, layout, dims=[kh, kw, c, n])


def optest_cases(ops: list[str], per_group: int = 2) -> list[Path]:
    """Up to ``per_group`` files per (target_bits folder, op) of the Espressif op tests, sorted."""
    if not OPTESTS.is_dir():
        return []
    out = []
    for group in sorted(OPTESTS.iterdir()):
        for op in ops:
            out.extend(sorted((group / op).glob("*.espdl"))[:per_group])
    return out
