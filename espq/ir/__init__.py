"""Graph IR: :class:`Graph`, :class:`Node`, :class:`TensorInfo` and ONNX conversion."""

from espq.ir.graph import Graph, Node, TensorInfo

__all__ = ["Graph", "Node", "TensorInfo"]
