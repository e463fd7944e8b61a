"""ONNX frontend: read a model (path or proto) into a static-shape, simplified ``ModelProto`` copy.

The user's file is only ever read. Every step works on an in-memory copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import shape_inference, version_converter

from espq.errors import ModelLoadError, ShapeError
from espq.ir.limits import size_message, too_large

log = logging.getLogger(__name__)

MIN_OPSET = 7
#: Old models are converted up to this opset (the attribute forms our passes normalise from are all
#: still accepted there); failures to convert are not fatal because the passes handle old forms.
CONVERT_TO_OPSET = 13

Shape = Sequence[int]


def read_onnx(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """Return a private copy of ``model`` (a path or a ``ModelProto``)."""
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    path = Path(model)
    if not path.is_file():
        raise ModelLoadError(f"ONNX model '{path}' does not exist or is not a file; check the path")
    data = path.read_bytes()
    if not data:
        raise ModelLoadError(f"'{path}' is empty (0 bytes); re-export the model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"'{path}' is not a valid ONNX file (protobuf decoding failed: {exc}); the file may be "
            "truncated or of another format — re-export it with torch.onnx.export or tf2onnx"
        ) from exc
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelLoadError(
            f"'{path}' decodes as protobuf but holds no ONNX graph (no nodes); it is not an ONNX model"
        )
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        onnx.load_external_data_for_model(proto, str(path.parent))
    return proto


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    """Old IR models list initializers as graph inputs too; treat them as constants."""
    init_names = {t.name for t in model.graph.initializer}
    keep = [vi for vi in model.graph.input if vi.name not in init_names]
    if len(keep) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(keep)
    if model.ir_version < 4:
        model.ir_version = 4


def _upgrade_opset(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    opset = _default_opset(model)
    if opset and opset < MIN_OPSET:
        raise ModelLoadError(
            f"{name} uses ONNX opset {opset}; espq accepts opset {MIN_OPSET} or newer. "
            "Re-export the model with a newer exporter"
        )
    if opset and opset < CONVERT_TO_OPSET:
        try:
            model = version_converter.convert_version(model, CONVERT_TO_OPSET)
        except Exception as exc:  # the converter lacks adapters for some ops; old forms still work
            log.info("opset %d -> %d conversion skipped for %s: %s", opset, CONVERT_TO_OPSET, name, exc)
    return model


def _input_dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
        for d in vi.type.tensor_type.shape.dim
    ]


def _normalise_shapes(input_shape: Shape | Sequence[Shape] | None, n_inputs: int) -> list[list[int]] | None:
    if input_shape is None:
        return None
    shapes = list(input_shape)
    if shapes and all(isinstance(d, int) for d in shapes):
        shapes = [shapes]
    shapes = [[int(d) for d in s] for s in shapes]
    if len(shapes) != n_inputs:
        raise ShapeError(
            f"input_shape gives {len(shapes)} shape(s) but the model has {n_inputs} input(s); "
            "pass one shape per graph input, in graph-input order"
        )
    return shapes


def _fix_input_shapes(model: onnx.ModelProto, input_shape: Shape | Sequence[Shape] | None, name: str) -> None:
    inputs = list(model.graph.input)
    shapes = _normalise_shapes(input_shape, len(inputs))
    for i, vi in enumerate(inputs):
        dims = vi.type.tensor_type.shape.dim
        if shapes is not None:
            want = shapes[i]
            current = _input_dims(vi)
            if len(current) not in (0, len(want)):
                raise ShapeError(
                    f"input '{vi.name}' of {name} has rank {len(current)} {current}, "
                    f"but input_shape gives {want}; pass a shape of rank {len(current)}"
                )
            for k, (cur, new) in enumerate(zip(current, want)):
                if isinstance(cur, int) and cur != new and k > 0:
                    raise ShapeError(
                        f"input '{vi.name}' of {name} has static dim {k} = {cur}, input_shape asks {new}"
                    )
            del dims[:]
            for d in want:
                dims.add().dim_value = d
            continue
        current = _input_dims(vi)
        if not current or any(not isinstance(d, int) for d in current):
            raise ShapeError(
                f"input '{vi.name}' of {name} has dynamic shape {current}; pass input_shape "
                "(e.g. espq.load(model, input_shape=[1, 3, 224, 224])) to fix every dimension"
            )
    # stale intermediate shapes would block re-inference with the new input dims
    del model.graph.value_info[:]
    for out in model.graph.output:
        if out.type.tensor_type.HasField("shape"):
            out.type.tensor_type.ClearField("shape")


def _simplify(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    try:
        import onnxslim

        # FusionGemm rewrites a MatMul on a rank-3 input as Reshape(-1, K) -> Gemm -> Reshape(static shape),
        # freezing the batch of the loaded shape: calibration with a larger batch would fail on the Reshape.
        # espq's own matmul_add_to_gemm pass fuses the rank-2 cases.
        slim = onnxslim.slim(model, skip_fusion_patterns=["FusionGemm"])
        if isinstance(slim, onnx.ModelProto) and len(slim.graph.node) > 0:
            return slim
    except Exception as exc:  # onnxslim is best effort: our passes fold constants as well
        log.info("onnxslim could not simplify %s (%s); continuing without it", name, exc)
    return model


def _infer_shapes(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:
        raise ShapeError(f"ONNX shape inference failed on {name}: {exc}") from exc


def _check_declared_sizes(model: onnx.ModelProto, name: str) -> None:
    """ShapeError when an initializer or an inferred tensor shape is beyond :mod:`espq.ir.limits`
    (ConstantOfShape / Expand / Tile / Resize / Pad of a few bytes declaring gigabytes), before onnxslim
    or onnxruntime allocates it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    for t in model.graph.initializer:
        if too_large(list(t.dims)):
            raise ShapeError(size_message(f"initializer '{t.name}' of {name}", list(t.dims)))
    for vi in list(model.graph.value_info) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shape = [d.dim_value for d in dims if d.HasField("dim_value")]
        if len(shape) == len(dims) and too_large(shape):
            node = producer.get(vi.name)
            where = f" (output of node '{node.name}', {node.op_type})" if node is not None else ""
            raise ShapeError(size_message(f"tensor '{vi.name}'{where} of {name}", shape))


def load_onnx(
    model: str | Path | onnx.ModelProto, input_shape: Shape | Sequence[Shape] | None = None
) -> onnx.ModelProto:
    """Read an ONNX model into a simplified copy with static shapes and batch as given.

    Steps: copy → drop initializers listed as inputs (old IR) → opset upgrade when < 13 →
    fix input shapes → shape inference → size limits (:mod:`espq.ir.limits`) → onnxslim (constant
    folding, simplification) → shape inference.
    """
    name = f"'{model}'" if not isinstance(model, onnx.ModelProto) else "the ONNX model"
    proto = read_onnx(model)
    _drop_initializer_inputs(proto)
    proto = _upgrade_opset(proto, name)
    _fix_input_shapes(proto, input_shape, name)
    proto = _infer_shapes(proto, name)
    _check_declared_sizes(proto, name)
    proto = _simplify(proto, name)
    return _infer_shapes(proto, name)
