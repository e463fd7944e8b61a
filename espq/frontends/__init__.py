"""Frontends: turn a user's model (ONNX, PyTorch, TensorFlow/Keras) into a canonical :class:`Graph`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx as onnx_lib

from espq.errors import ModelLoadError
from espq.frontends.onnx import load_onnx
from espq.frontends.tf import is_tf_model, load_tf
from espq.frontends.torch import export_torch
from espq.ir import Graph
from espq.ir.onnx_io import graph_from_onnx


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return isinstance(model, torch.nn.Module)


def to_onnx(model: Any, input_shape: Any = None, inputs: Any = None) -> onnx_lib.ModelProto:
    """Convert any supported model to a simplified, static-shape ONNX ``ModelProto`` (a copy)."""
    if isinstance(model, Graph):
        return model.to_onnx()
    if isinstance(model, onnx_lib.ModelProto):
        return load_onnx(model, input_shape)
    if _is_torch_module(model):
        return load_onnx(export_torch(model, input_shape=input_shape, inputs=inputs))
    if is_tf_model(model):
        return load_onnx(load_tf(model, input_shape=input_shape))
    if isinstance(model, (str, Path)):
        return load_onnx(model, input_shape)
    raise ModelLoadError(
        f"cannot load a model of type {type(model).__name__}; pass an ONNX path or ModelProto, "
        "a torch.nn.Module, a Keras model or a SavedModel directory"
    )


def load(model: Any, input_shape: Any = None, inputs: Any = None, canonicalize: bool = True) -> Graph:
    """Load ``model`` into espq's canonical graph IR.

    ``model``: an ONNX path or ``ModelProto``, a ``torch.nn.Module``, or a Keras model / ``.keras`` file /
    SavedModel directory. ``input_shape``: one shape or a list of shapes (batch 1), needed for torch
    models and for ONNX models with dynamic dimensions. ``inputs``: example inputs (torch models).
    The user's file is never written.
    """
    from espq.ir.passes import canonicalize as run_passes

    if isinstance(model, Graph):
        graph = model.copy()
    else:
        graph = graph_from_onnx(to_onnx(model, input_shape=input_shape, inputs=inputs))
    return run_passes(graph) if canonicalize else graph


__all__ = ["load", "to_onnx", "load_onnx", "export_torch", "load_tf"]
