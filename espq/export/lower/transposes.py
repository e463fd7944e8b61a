"""Fuse Transpose chains and drop identity Transposes (esp_ppq_facts.md §3.7 step 4,
FuseTransposePattern)."""

from __future__ import annotations

from espq.export.lower.state import ExportState


def fuse_transposes(state: ExportState) -> int:
    """Compose Transpose → Transpose (first with a single consumer) and remove identity Transposes.

    Returns the number of Transpose nodes removed. A removed identity Transpose that wrote a graph
    output keeps the output name (its input tensor is renamed). An identity Transpose that changes
    the original layout at a graph input or output stays (see :func:`_holds_io_layout`).
    """
    g = state.graph
    removed = 0
    changed = True
    while changed:
        changed = False
        for node in list(g.nodes):
            if node.op_type != "Transpose":
                continue
            src = node.inputs[0]
            prev = g.producer(src)
            if (
                prev is not None
                and prev.op_type == "Transpose"
                and len(g.consumers(src)) == 1
                and src not in g.outputs
            ):
                p1 = [int(a) for a in prev.attrs["perm"]]
                p2 = [int(a) for a in node.attrs["perm"]]
                node.attrs["perm"] = [p1[j] for j in p2]
                node.inputs[0] = prev.inputs[0]
                g.remove_node(prev)
                g.values.pop(src, None)
                state.specs.pop(src, None)
                state.perms.pop(src, None)
                removed += 1
                changed = True
                break
            perm = [int(a) for a in node.attrs["perm"]]
            if perm == list(range(len(perm))) and not _holds_io_layout(state, src, node.outputs[0]):
                out = node.outputs[0]
                g.remove_node(node)
                if out in g.outputs and src not in g.inputs and src not in g.outputs:
                    g.replace_uses(out, src, keep_outputs=True)
                    g.values.pop(out, None)
                    state.specs.pop(out, None)
                    state.perms.pop(out, None)
                    state.rename(src, out)
                else:
                    g.replace_uses(out, src)
                    g.values.pop(out, None)
                    state.specs.pop(out, None)
                    state.perms.pop(out, None)
                removed += 1
                changed = True
                break
    return removed


def _holds_io_layout(state: ExportState, src: str, out: str) -> bool:
    """True for an identity Transpose that reads a graph input or writes a graph output whose original
    layout differs from the other side's (e.g. a Keras NHWC output ``Transpose(Conv(x), [0, 2, 3, 1])``:
    the Conv output is NHWC on the chip, so the rewritten Transpose is the identity). Without it the
    graph would say the graph input/output is in the Conv's NCHW layout: the integer runner (which
    recovers graph I/O layouts from the graph, ``espq.sim.integer.layout_replay``) and the test values
    would use the wrong shape. It costs one copy on the chip."""
    g = state.graph
    if src not in g.inputs and out not in g.outputs:
        return False
    return state.perm(src) != state.perm(out) or g.shape(src) != g.shape(out)
