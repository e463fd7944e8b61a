"""Embedded test values (esp_dl_facts.md §2.6, esp_ppq_facts.md §4.8).

Inputs (by graph-input name) and outputs (graph outputs or named intermediates) computed by the
fake-quant simulator, stored quantized with the tensor's exponent (int8/int16; float32 with exponent
[0] for float tensors) in the exported layout. int16 LUT nodes are simulated with the runtime's
nearest-entry lookup (:func:`espq.sim.lut.int16_lut_kernel`) so the stored outputs are what
the chip computes. A NaN/Inf value is never stored (:func:`check_finite` raises instead).
The default input is ``np.random.default_rng(0).standard_normal`` (reproducible).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from espq.errors import ConfigError, ValidationError
from espq.espdl.model import EspdlTensor
from espq.espdl.schema import TensorDataType
from espq.export.builder import int_type
from espq.export.lower.state import ExportState
from espq.targets.rounding import quantize


def default_inputs(graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal float32 inputs of each graph input's static shape (batch 1), seeded."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in graph.inputs:
        shape = graph.shape(name)
        if shape is None:
            raise ConfigError(f"graph input '{name}' has no static shape; pass test_inputs explicitly")
        info = graph.values[name]
        feeds[name] = rng.standard_normal([int(d) for d in shape]).astype(info.dtype)
    return feeds


def simulate(qm, feeds: Any, outputs: Sequence[str], int16_lut_step: int) -> dict[str, np.ndarray]:
    """``qm``'s fake-quant run with int16 LUT nodes simulated by their nearest-entry tables."""
    from espq.sim.fakequant import FakeQuantSim
    from espq.sim.float import prepare_inputs

    sim = FakeQuantSim(qm.graph, qm.plan, qm.target, int16_lut_step=int16_lut_step)
    prepared = prepare_inputs(qm.graph, feeds)
    with torch.no_grad():
        res = sim.run_torch(prepared, list(outputs))
    out = {k: v.detach().cpu().numpy() for k, v in res.items()}
    for name, value in prepared.items():
        out.setdefault(name, value.detach().cpu().numpy())
    return out


def check_finite(graph, values: dict[str, np.ndarray], names: Sequence[str]) -> None:
    """Raise :class:`ValidationError` naming every tensor of ``names`` whose value has NaN or Inf.

    Such a value cast to int would be garbage the chip's ``Model::test()`` compares against.
    """
    bad = []
    for name in names:
        arr = np.asarray(values[name])
        if not np.issubdtype(arr.dtype, np.floating) or np.isfinite(arr).all():
            continue
        producer = graph.producer(name)
        where = f"output of node '{producer.name}' ({producer.op_type})" if producer else "an input"
        bad.append(
            f"test value of tensor '{name}' ({where}) has {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} Inf of {arr.size} elements in the fake-quant simulation (e.g. a "
            "Div by a value quantized to 0); pass other test_inputs, or fix the model/plan there"
        )
    if bad:
        raise ValidationError(bad, "the exported test values")


def stored_tensor(state: ExportState, name: str, value: np.ndarray) -> EspdlTensor:
    """``value`` (float, original layout) stored as the exported tensor ``name`` is."""
    arr = np.asarray(value)
    p = state.perm(name)
    if arr.ndim == len(p) and arr.ndim > 1:
        arr = arr.transpose(p)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    spec = state.specs.get(name)
    if spec is not None and spec.exponent is not None:
        q = quantize(arr.astype(np.float64), int(spec.exponent), spec.bits, state.target.rounding.value)
        return EspdlTensor.from_array(name, q, int_type(spec.bits), [int(spec.exponent)])
    if arr.dtype == np.bool_:
        return EspdlTensor.from_array(name, arr, TensorDataType.BOOL, [0])
    if np.issubdtype(arr.dtype, np.integer):
        return EspdlTensor.from_array(name, arr, TensorDataType.INT64, [0])
    return EspdlTensor.from_array(name, arr, TensorDataType.FLOAT, [0])


def build_test_values(
    qm,
    state: ExportState,
    int16_lut_step: int,
    test_inputs: Any = None,
    output_names: Sequence[str] | None = None,
) -> tuple[dict[str, EspdlTensor], dict[str, EspdlTensor]]:
    """(test_inputs_value, test_outputs_value) of the exported graph."""
    names = list(output_names) if output_names else list(state.graph.outputs)
    exported = set(state.graph.inputs) | {o for n in state.graph.nodes for o in n.outputs}
    missing = [n for n in names if n not in exported]
    if missing:
        raise ConfigError(
            f"test outputs {missing} are not tensors of the exported graph (a Conv output fused with its "
            "Relu is exported under the Relu's output name); name graph outputs or surviving intermediates"
        )
    feeds = test_inputs if test_inputs is not None else default_inputs(qm.graph)
    res = simulate(qm, feeds, names, int16_lut_step)
    check_finite(qm.graph, res, list(state.graph.inputs) + names)
    ins = {n: stored_tensor(state, n, res[n]) for n in state.graph.inputs}
    outs = {n: stored_tensor(state, n, res[n]) for n in names}
    return ins, outs
