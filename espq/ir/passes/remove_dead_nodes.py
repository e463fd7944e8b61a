"""Delete nodes that reach no graph output, and unused initializers (ESP-PPQ DELETE_ISOLATED, §3.2)."""

from __future__ import annotations

import logging

from espq.ir.graph import Graph

logger = logging.getLogger(__name__)


def remove_dead_nodes(graph: Graph) -> int:
    """Prune the graph (:meth:`Graph.prune`). Returns #nodes + #initializers removed.

    * matches: nodes none of whose outputs is (transitively) needed by a graph output, and
      initializers no remaining node reads;
    * produces: the graph without them (value infos of removed tensors are dropped too).
    """
    n_init = len(graph.initializers)
    removed = graph.prune()
    removed_init = n_init - len(graph.initializers)
    if removed or removed_init:
        logger.debug("removed %d dead nodes and %d unused initializers", removed, removed_init)
    return removed + removed_init
