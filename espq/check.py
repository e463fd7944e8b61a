"""The public capability check: load any supported model, then classify its nodes for a target."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from espq.frontends import load
from espq.ir.graph import Graph
from espq.targets import CapabilityReport, Target
from espq.targets import check_model as check_graph
from espq.targets.check import Override


def check_model(
    model: Any,
    target: str | Target,
    bits: int = 8,
    overrides: Mapping[str, Override] | None = None,
    strict: bool = True,
) -> CapabilityReport:
    """Classify every node of ``model`` for ``target`` at default width ``bits``.

    ``model`` is a canonicalised :class:`~espq.ir.graph.Graph` or anything :func:`espq.load` accepts (a
    path, an ONNX ModelProto, a torch or Keras model), which is loaded and canonicalised first. See
    :func:`espq.targets.check_model` for ``overrides`` and ``strict``.
    """
    graph = model if isinstance(model, Graph) else load(model)
    return check_graph(graph, target, bits, overrides=overrides, strict=strict)
