"""TensorFlow/Keras frontend (extra ``[tf]``): Keras model, ``.keras``/``.h5`` file or SavedModel → ONNX.

Conversion uses tf2onnx. The converted graph keeps TensorFlow's NHWC input layout; ONNX
operators inside run NCHW with the Transposes tf2onnx inserts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from espq.errors import MissingDependencyError, ModelLoadError, ShapeError

TF_OPSET = 17


def _import_tf() -> tuple[Any, Any]:
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise MissingDependencyError(
            f"loading a TensorFlow/Keras model needs TensorFlow and tf2onnx ({exc}); "
            "install them with: pip install 'espq[tf]'"
        ) from exc
    return tf, tf2onnx


_TF_MODULES = ("keras", "tensorflow", "tf_keras")


def is_tf_model(model: Any) -> bool:
    """True for Keras models (subclassed ones too), SavedModel directories and .keras / .h5 paths.

    A subclassed ``tf.keras.Model`` (e.g. ``class PNet(tf.keras.Model)`` in the user's module) is
    recognised by a base class defined in Keras/TensorFlow; TensorFlow is not imported.
    """
    if isinstance(model, (str, Path)):
        p = Path(model)
        return (p.is_dir() and (p / "saved_model.pb").exists()) or p.suffix in (".keras", ".h5")
    return any(cls.__module__.startswith(_TF_MODULES) for cls in type(model).__mro__[:-1])


def _model_input_shapes(model: Any) -> tuple[list[list[Any]], list[str]]:
    """The shapes and names of a Keras model's inputs.

    Functional and Sequential models list ``model.inputs``; a subclassed model has none, so the shape
    it was built with is used (``model.build(shape)`` or its first call). ShapeError when neither exists.
    """
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if inputs:
        names = [getattr(t, "name", f"input_{i}").split(":")[0] for i, t in enumerate(inputs)]
        return [list(t.shape) for t in inputs], names
    built = getattr(model, "_build_shapes_dict", None) or {}
    shapes = [list(s) for s in built.values() if isinstance(s, (tuple, list))]
    if len(shapes) != 1 or not all(d is None or isinstance(d, int) for d in shapes[0]):
        raise ShapeError(
            f"the subclassed Keras model {type(model).__name__} has no recorded input shape; pass "
            "input_shape (NHWC, batch 1, e.g. [1, 48, 48, 3]) or build/call the model once first"
        )
    return shapes, ["input"]


def _signature(model: Any, input_shape: Any, tf: Any) -> tuple[Any, ...]:
    """TensorSpecs of the model's inputs with batch 1 (``input_shape`` overrides the model's dims)."""
    if input_shape is None:
        shapes, names = _model_input_shapes(model)
        if any(d is None for s in shapes for d in s[1:]):
            raise ShapeError(
                f"Keras model inputs have unknown dims {shapes}; pass input_shape (NHWC, batch 1)"
            )
        shapes = [[1, *s[1:]] for s in shapes]
    else:
        one = bool(input_shape) and all(isinstance(d, int) for d in input_shape)
        shapes = [input_shape] if one else input_shape
        try:
            names = _model_input_shapes(model)[1]
        except ShapeError:
            names = []
        if len(names) != len(shapes):
            names = ["input"] if len(shapes) == 1 else [f"input_{i}" for i in range(len(shapes))]
    return tuple(tf.TensorSpec(s, tf.float32, name=n) for s, n in zip(shapes, names))


def _convert_signature(fn: Any, input_shape: Any, tf: Any, tf2onnx: Any) -> onnx.ModelProto:
    """Convert a SavedModel serving signature, with batch 1 (or ``input_shape``) made static."""
    specs = fn.structured_input_signature[1]
    names = list(specs)
    shapes = input_shape
    if shapes is not None and shapes and all(isinstance(d, int) for d in shapes):
        shapes = [shapes]
    static = []
    for i, name in enumerate(names):
        dims = list(specs[name].shape)
        want = list(shapes[i]) if shapes is not None else [1, *dims[1:]]
        if any(d is None for d in want):
            raise ShapeError(f"SavedModel input '{name}' has unknown dims {dims}; pass input_shape (batch 1)")
        static.append(tf.TensorSpec(want, specs[name].dtype, name=name))

    @tf.function(input_signature=static)
    def serving(*args: Any) -> Any:
        return fn(**dict(zip(names, args)))

    proto, _ = tf2onnx.convert.from_function(serving, input_signature=static, opset=TF_OPSET)
    return proto


def _convert_keras(model: Any, spec: tuple[Any, ...], tf: Any, tf2onnx: Any) -> onnx.ModelProto:
    """tf2onnx's Keras converter, or its function converter on the model's call where the Keras one
    fails (tf2onnx 1.17 raises KeyError 'keras_tensor_N' on Keras 3 Sequential models)."""
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=TF_OPSET)
        return proto
    except Exception:

        @tf.function(input_signature=spec)
        def call(*args: Any) -> Any:
            return model(args[0] if len(args) == 1 else list(args), training=False)

        proto, _ = tf2onnx.convert.from_function(call, input_signature=spec, opset=TF_OPSET)
        return proto


def load_tf(model: Any, input_shape: Any = None) -> onnx.ModelProto:
    """Convert a Keras model (object or file) or a SavedModel directory to ONNX."""
    tf, tf2onnx = _import_tf()
    try:
        if isinstance(model, (str, Path)):
            path = Path(model)
            if path.is_dir():
                loaded = tf.saved_model.load(str(path))
                fn = loaded.signatures.get("serving_default")
                if fn is None:
                    raise ModelLoadError(f"SavedModel '{path}' has no 'serving_default' signature")
                return _convert_signature(fn, input_shape, tf, tf2onnx)
            model = tf.keras.models.load_model(str(path), compile=False)
        return _convert_keras(model, _signature(model, input_shape, tf), tf, tf2onnx)
    except (ModelLoadError, ShapeError):
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"tf2onnx could not convert the TensorFlow model: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}. Check that the model builds and runs "
            "with a batch-1 input, or convert it to ONNX yourself and pass the .onnx file"
        ) from exc
