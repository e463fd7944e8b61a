"""PyTorch frontend: ``torch.nn.Module`` → ONNX via the TorchScript exporter (opset 18).

``dynamo=False`` keeps node names like ``/features/features.1/conv/conv.0/conv.0.0/Conv`` that ESP-PPQ
users know from its reports and dispatching tables (esp_ppq_facts.md §1.3).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx

from espq.errors import ModelLoadError, ShapeError

TORCH_OPSET = 18


def _example_inputs(input_shape: Any, inputs: Any) -> tuple[Any, ...]:
    import torch

    if inputs is not None:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return tuple(torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x) for x in items)
    if input_shape is None:
        raise ShapeError(
            "a torch model needs input_shape (e.g. [1, 3, 224, 224], or a list of shapes for several "
            "inputs) or example inputs to be exported to ONNX"
        )
    shapes: list[Sequence[int]] = list(input_shape)
    if shapes and all(isinstance(d, int) for d in shapes):
        shapes = [shapes]  # type: ignore[list-item]
    return tuple(torch.zeros([int(d) for d in s], dtype=torch.float32) for s in shapes)


def export_torch(
    module: Any,
    input_shape: Any = None,
    inputs: Any = None,
    opset: int = TORCH_OPSET,
) -> onnx.ModelProto:
    """Export ``module`` (eval mode) to an ONNX ``ModelProto`` with the TorchScript exporter."""
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"expected a torch.nn.Module, got {type(module).__name__}")
    args = _example_inputs(input_shape, inputs)
    names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                buf,
                opset_version=opset,
                do_constant_folding=True,
                input_names=names,
                dynamo=False,
            )
    except Exception as exc:
        raise ModelLoadError(
            f"torch.onnx.export failed for {type(module).__name__} with input shapes "
            f"{[list(a.shape) for a in args]}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}. "
            "Check that the model runs on these inputs in eval mode and uses ops the ONNX exporter "
            "supports; or export it to ONNX yourself and pass the .onnx file"
        ) from exc
    finally:
        module.train(was_training)
    return onnx.load_from_string(buf.getvalue())
