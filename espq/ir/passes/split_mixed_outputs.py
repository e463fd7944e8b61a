"""Split a concatenated graph output into its parts (YOLO-style heads: box pixels next to class scores).

A Concat whose inputs differ in range by orders of magnitude shares one exponent: the small part rounds
to a few codes (every class score of YOLOv8n's ``output0`` to 0 at int8). Making each input its own graph
output gives each part its own exponent; ESP-DL's own YOLO exports split the heads the same way. The
split is recorded in ``graph.metadata[SPLIT_KEY]`` (JSON: output -> its parts, in Concat order, with the
axis) and exported into the ``.espdl`` file's ``metadata_props`` under the same key.

What the user sees: the exported file's outputs are the parts (one exponent each; on the chip the
application reads each head by its own name, as with ESP-DL's YOLO exports). espq's runners
(``QuantizedModel.run``/``run_float``, ``IntegerRunner.run``/``run_espdl`` without ``raw``) return the
parts and, under the original output name, the dequantized parts concatenated again along the Concat
axis (:func:`join_split_outputs`); ``outputs=[original]`` asks for it by name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

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


def split_record(metadata: Mapping[str, str]) -> dict[str, dict]:
    """The split record in ``metadata`` (a graph's metadata or a file's ``metadata_props``): original
    output -> ``{"parts": [...], "axis": int}``; empty when nothing was split."""
    text = metadata.get(SPLIT_KEY)
    return json.loads(text) if text else {}


def expand_split_outputs(record: Mapping[str, dict], outputs: Sequence[str] | None) -> list[str] | None:
    """``outputs`` with every split original output replaced by its parts (None stays None)."""
    if outputs is None:
        return None
    expanded: list[str] = []
    for name in outputs:
        expanded += record[name]["parts"] if name in record else [name]
    return list(dict.fromkeys(expanded))


def join_split_outputs(
    record: Mapping[str, dict], results: dict[str, np.ndarray], outputs: Sequence[str] | None
) -> dict[str, np.ndarray]:
    """``results`` (float arrays by name) with each split original output rebuilt: its parts concatenated
    along the recorded axis. ``outputs=None`` adds every original whose parts are all present; otherwise
    the result holds exactly the names in ``outputs``."""
    if outputs is None:
        wanted = [o for o in record if all(p in results for p in record[o]["parts"])]
    else:
        wanted = list(outputs)
    joined = dict(results) if outputs is None else {}
    for name in wanted:
        if name in record:
            info = record[name]
            joined[name] = np.concatenate([results[p] for p in info["parts"]], axis=info["axis"])
        else:
            joined[name] = results[name]
    return joined


__all__ = [
    "SPLIT_KEY",
    "expand_split_outputs",
    "join_split_outputs",
    "split_concat_outputs",
    "split_record",
]
