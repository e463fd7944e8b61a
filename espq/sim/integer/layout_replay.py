"""Graph input/output conversion between the user's float ONNX-layout arrays and the chip's tensors.

Layout rule (esp_dl_facts.md §2.5; esp_ppq_facts.md §4 "reset_graph_layout"): ESP-PPQ gives every
variable a permutation ``perm`` (exported axis i holds original axis ``perm[i]``) and writes the
permuted shape into the ValueInfo. The file does not store ``perm``, so it is recovered here by
replaying the exporter's rules forward over the exported graph (the Transposes ESP-PPQ inserted are
nodes of that graph):

* a rank-3/4 graph input is channel-last (``[0, 2, 1]`` / ``[0, 2, 3, 1]``) when one of its direct
  consumers is a conv-like op (Conv, pools, Resize, DepthToSpace, SpaceToDepth, InsertZeros);
  otherwise the exporter would have inserted a Transpose between them, so the input keeps the
  original layout;
* outputs of conv-like ops are channel-last;
* unary, broadcasting and axis ops (activations, quantisation ops, element-wise ops, Concat,
  Softmax-like, Reduce, Slice, Pad, Gather: ``espq.ir.op_facts.INHERIT_LAYOUT_OPS``) pass the
  permutation of their first activation input of the same rank through (Reduce with ``keepdims=0``
  drops the reduced axes);
* everything else (Transpose, Reshape, Gemm, MatMul, ...) produces the original layout.

Inputs are converted ``original -> exported`` with ``np.transpose(x, perm)``, outputs back with the
inverse permutation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from espq.espdl.model import EspdlModel, EspdlValueInfo
from espq.espdl.schema import NUMPY_DTYPES
from espq.ir.op_facts import CONV_LAYOUT_OPS, INHERIT_LAYOUT_OPS
from espq.targets import Target
from espq.targets.rounding import quantize

CONV_LIKE = CONV_LAYOUT_OPS
#: ops whose output keeps the layout of their (first) activation input: the exporter's UNARY, BROADCAST
#: and AXIS families (one set from the op-facts table, so the replay and the exporter agree)
_INHERIT = INHERIT_LAYOUT_OPS

Perm = tuple[int, ...]


def channel_last_perm(rank: int) -> Perm | None:
    """``[0, 2, 1]`` for rank 3, ``[0, 2, 3, 1]`` for rank 4, None otherwise."""
    return {3: (0, 2, 1), 4: (0, 2, 3, 1)}.get(rank)


def value_infos(model: EspdlModel) -> dict[str, EspdlValueInfo]:
    """name -> ValueInfo over ``value_info``, graph inputs and graph outputs."""
    g = model.graph
    out: dict[str, EspdlValueInfo] = {}
    for vi in (*g.value_info, *g.inputs, *g.outputs):
        out.setdefault(vi.name, vi)
    return out


def static_shape(vi: EspdlValueInfo | None) -> tuple[int, ...] | None:
    """The ValueInfo shape when every dim is a known integer, else None."""
    if vi is None or vi.shape is None or not all(isinstance(d, int) for d in vi.shape):
        return None
    return tuple(int(d) for d in vi.shape)


def np_dtype(elem_type: int) -> np.dtype:
    """numpy dtype of a TensorDataType code (float32 for unknown codes)."""
    return NUMPY_DTYPES.get(elem_type, np.dtype(np.float32))


def _reduce_axes(node, model: EspdlModel, rank: int) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] in model.graph.initializers:
        return [int(a) % rank for a in model.graph.initializers[node.inputs[1]].values()]
    axes = node.attr("axes")
    return [int(a) % rank for a in axes] if axes is not None else None


def layout_perms(model: EspdlModel) -> dict[str, Perm]:
    """tensor name -> permutation (exported axis i = original axis perm[i]), non-identity ones only."""
    g = model.graph
    vis = value_infos(model)
    inits = g.initializers

    def rank(name: str) -> int | None:
        vi = vis.get(name)
        return len(vi.shape) if vi is not None and vi.shape is not None else None

    def channel_last(node) -> bool:  # a PRelu's per-channel slope runs along shape[3] (NHWC)
        slope = inits.get(node.inputs[1]) if node.op_type == "PRelu" and len(node.inputs) > 1 else None
        return node.op_type in CONV_LIKE or (slope is not None and slope.numel > 1)

    perms: dict[str, Perm] = {}
    for vi in g.inputs:
        r = rank(vi.name)
        cl = channel_last_perm(r or 0)
        readers = g.consumers(vi.name)  # a StreamingCache in front of a Conv: channel-last (ESP-PPQ §8.2)
        readers += [c for n in readers if n.op_type == "StreamingCache" for c in g.consumers(n.outputs[0])]
        if cl is not None and any(channel_last(n) for n in readers):
            perms[vi.name] = cl
    for node in g.nodes:
        acts = [t for t in node.inputs if t and t not in inits]
        if channel_last(node):
            for t in node.outputs:
                cl = channel_last_perm(rank(t) or 0)
                if cl is not None:
                    perms[t] = cl
            continue
        if node.op_type not in _INHERIT or not acts:
            continue
        for t in node.outputs:
            r_out = rank(t)
            src = next((perms[a] for a in acts if a in perms and rank(a) == r_out), None)
            if src is None and node.op_type.startswith("Reduce") and acts[0] in perms:
                p_in = perms[acts[0]]
                axes = _reduce_axes(node, model, len(p_in))
                if axes is not None and int(node.attr("keepdims", 1)) == 0:
                    kept = [p_in[i] for i in range(len(p_in)) if i not in axes]
                    order = sorted(kept)
                    src = tuple(order.index(k) for k in kept)
            if src is not None and src != tuple(range(len(src))):
                perms[t] = src
    return perms


def to_exported(x: np.ndarray, perm: Perm | None) -> np.ndarray:
    """Original (ONNX) layout -> exported layout."""
    return x if perm is None else np.ascontiguousarray(np.transpose(x, perm))


def to_original(x: np.ndarray, perm: Perm | None) -> np.ndarray:
    """Exported layout -> original (ONNX) layout."""
    return x if perm is None else np.ascontiguousarray(np.transpose(x, np.argsort(perm)))


def original_shape(shape: tuple[int, ...], perm: Perm | None) -> tuple[int, ...]:
    """The ONNX shape of a tensor stored with ``shape`` under ``perm``."""
    if perm is None:
        return tuple(shape)
    out = [0] * len(shape)
    for i, p in enumerate(perm):
        out[p] = shape[i]
    return tuple(out)


def quantize_input(x: np.ndarray, vi: EspdlValueInfo, target: Target) -> np.ndarray:
    """Float values -> the ValueInfo's dtype: ``TensorBase::assign`` float -> int (esp_dl_facts.md §2.6,
    §4.9: saturate(round_target(v · 2^-e))); float/bool inputs are only cast."""
    dt = np_dtype(vi.elem_type)
    if not np.issubdtype(dt, np.integer):
        return np.asarray(x).astype(dt)
    xf = np.asarray(x, dtype=np.float32)
    return quantize(xf, vi.exponent, dt.itemsize * 8, target.rounding).astype(dt)


def as_feed_dict(inputs: object, names: list[str]) -> Mapping[str, np.ndarray]:
    """Normalise ``inputs`` (mapping, single array, or sequence in graph-input order) to a dict."""
    if isinstance(inputs, Mapping):
        return {str(k): np.asarray(v) for k, v in inputs.items()}
    if isinstance(inputs, np.ndarray):
        return {names[0]: inputs} if len(names) == 1 else {"": inputs}
    if isinstance(inputs, (list, tuple)):
        return {n: np.asarray(v) for n, v in zip(names, inputs)}
    return {"": np.asarray(inputs)}
