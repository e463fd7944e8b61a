"""Op-type families of ONNX that several stages treat alike (per-op facts: :mod:`espq.ir.op_facts`)."""

from __future__ import annotations

#: The ONNX Reduce* operators (ESP-DL registers all ten, esp_dl_facts §3.1); input 1 holds the axes.
REDUCE_OPS = (
    "ReduceL1",
    "ReduceL2",
    "ReduceMin",
    "ReduceMax",
    "ReduceSum",
    "ReduceProd",
    "ReduceMean",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
)
