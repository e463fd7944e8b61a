"""Fuse Keras's decomposed PReLU ``Relu(x) + c · Relu(−x)`` into one ``PRelu(x, −c)``.

tf2onnx writes ``tf.keras.layers.PReLU`` (``relu(x) − α · relu(−x)``) as Relu, Neg, Relu, Mul by the
folded constant ``c = −α``, Add (mtcnn's Keras P/R/O-Net: ten of them). Five quantized ops then stand
for one ESP-DL PRelu: four extra requantizations, and the int16 Mul by the slope rounds differently in
fake-quant and on the chip (1 LSB on 7 of 186,440 codes of P-Net's first PReLU, 6 LSB at the output).
The slope is stored the way torch exports ``nn.PReLU`` (``[C, 1, 1]`` on a 4-D input, ``[C]`` on 2-D).
"""

from __future__ import annotations

import logging

import numpy as np

from espq.ir.graph import Graph, Node
from espq.ir.passes._common import add_initializer, const, rank, skip, sole_consumer

logger = logging.getLogger(__name__)


def _producer(graph: Graph, tensor: str, op: str) -> Node | None:
    p = graph.producer(tensor)
    return p if p is not None and p.op_type == op and p.domain in ("", "ai.onnx") else None


def _match(graph: Graph, add: Node) -> tuple[Node, Node, Node, Node, np.ndarray] | None:
    """(Relu(x), Neg(x), Relu(Neg), Mul, c) of ``add`` = Relu(x) + Mul(Relu(Neg(x)), c), else None."""
    for i in (0, 1):
        pos, mul = _producer(graph, add.inputs[i], "Relu"), _producer(graph, add.inputs[1 - i], "Mul")
        if pos is None or mul is None or len(mul.inputs) != 2:
            continue
        for j in (0, 1):
            c = const(graph, mul.inputs[1 - j])
            neg_relu = _producer(graph, mul.inputs[j], "Relu")
            neg = _producer(graph, neg_relu.inputs[0], "Neg") if neg_relu is not None else None
            if c is not None and neg is not None and neg.inputs[0] == pos.inputs[0]:
                return pos, neg, neg_relu, mul, c
    return None


def _slope(c: np.ndarray, r: int) -> np.ndarray | None:
    """``−c`` with leading 1-dims dropped to rank ``r − 1`` (torch's PReLU slope layout), or None when
    ``c`` broadcasts over the batch axis or beyond ``x``'s rank."""
    s = -np.asarray(c, np.float32)
    if s.ndim > r:
        return None
    if s.ndim == r:
        if s.shape[0] != 1:
            return None
        s = s.reshape(s.shape[1:])
    return s


def fuse_prelu(graph: Graph) -> int:
    """Replace ``Add(Relu(x), Mul(Relu(Neg(x)), c))`` (operands in either order) by ``PRelu(x, −c)``.

    * fires when: ``c`` is a constant that does not vary along the batch axis, every intermediate is
      read only by the next node of the chain (none is a graph output) and ``x``'s rank is known;
    * produces: ``PRelu`` named ``<add name>/PRelu`` writing the Add's output. Returns #fusions.
    """
    count = 0
    for add in list(graph.nodes):
        if add.op_type != "Add" or len(add.inputs) != 2 or add.domain not in ("", "ai.onnx"):
            continue
        found = _match(graph, add)
        if found is None:
            continue
        pos, neg, neg_relu, mul, c = found
        x = pos.inputs[0]
        chain = [(pos, add), (mul, add), (neg_relu, mul), (neg, neg_relu)]
        if any(sole_consumer(graph, n.outputs[0]) is not reader for n, reader in chain):
            skip(logger, add, "an intermediate of the PReLU chain has other readers")
            continue
        r = rank(graph, x)
        slope = None if r is None else _slope(c, r)
        if slope is None:
            skip(logger, add, f"slope shape {list(np.shape(c))} does not fit a PRelu on rank {r}")
            continue
        for n, _ in chain:
            graph.values.pop(n.outputs[0], None)
            graph.remove_node(n)
        add.op_type = "PRelu"
        add.name = graph.unique_name(f"{add.name}/PRelu")
        add.inputs = [x, add_initializer(graph, f"{add.name}/slope", slope)]
        add.attrs = {}
        graph.invalidate()
        count += 1
    return count
