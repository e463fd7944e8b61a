"""Split a concatenated graph output into its parts (YOLO-style heads: box pixels next to class scores).

A Concat whose inputs differ in range by orders of magnitude shares one exponent: the small part rounds
to a few codes (every class score of YOLOv8n's ``output0`` to 0 at int8). Making each input its own graph
output gives each part its own exponent; ESP-DL's own YOLO exports split the heads the same way. The
split is recorded in ``graph.metadata[SPLIT_KEY]`` (JSON: output -> its parts, in Concat order, with the
axis) so the application can concatenate the dequantized parts again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from espq.errors import ConfigError
from espq.ir.graph import Graph

logger = logging.getLogger(__name__)

SPLIT_KEY = "espq.split_outputs"


def split_concat_outputs(graph: Graph, outputs: Iterable[str]) -> dict[str, list[str]]:
    """Replace each graph output in ``outputs`` (produced by a Concat) by the Concat's inputs.

    The Concat is removed when nothing else reads its output. Returns output -> parts; the same record
    (plus the Concat axis) is merged into ``graph.metadata[SPLIT_KEY]``.
    """
    record = json.loads(graph.metadata.get(SPLIT_KEY, "{}"))
    done: dict[str, list[str]] = {}
    for out in outputs:
        node = graph.producer(out)
        if out not in graph.outputs or node is None or node.op_type != "Concat":
            raise ConfigError(f"cannot split graph output '{out}': it is not a graph output made by a Concat")
        parts = [t for t in node.inputs if t and t not in graph.initializers]
        if len(parts) != len(node.inputs) or len(set(parts)) != len(parts):
            raise ConfigError(
                f"cannot split '{out}' (Concat '{node.name}'): it has constant or repeated inputs"
            )
        i = graph.outputs.index(out)
        new = [p for p in parts if p not in graph.outputs]
        graph.outputs[i : i + 1] = new
        if not graph.consumers(out):
            graph.remove_node(node)
        graph.invalidate()
        done[out] = parts
        record[out] = {"parts": parts, "axis": int(node.attr("axis", 0))}
        logger.info("split graph output '%s' (Concat '%s') into %s", out, node.name, parts)
    graph.metadata[SPLIT_KEY] = json.dumps(record, sort_keys=True)
    return done


__all__ = ["SPLIT_KEY", "split_concat_outputs"]
