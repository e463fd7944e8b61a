"""``statistical_analyse``: ESP-PPQ's per-variable error statistics, computed with espq's simulators.

For every quantized op that is not passive (:data:`espq.ir.quant_rules.PASSIVE_OPS`, as ESP-PPQ skips its
``PASSIVE_OPERATIONS``) and each of its inputs and outputs, one record with ESP-PPQ's keys: the quantized
values (fake-quant run, parameters fake-quantized with their spec) against the float ones (float model),
their noise, each as mean / std / skewness / kurtosis / 32-bin histogram / min / max, and the
noise-to-signal power ratio. Like ESP-PPQ, ``steps + 1`` batches are read and 1024 elements per tensor
and batch are sampled (seeded, so runs repeat; the sampled positions differ from ESP-PPQ's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from espq.analysis.metrics import batch_metrics
from espq.executor.torch import cpu_inputs
from espq.ir.quant_rules import PASSIVE_OPS
from espq.quant.model import QuantizedModel
from espq.quantization.analyse.errors import quantized_model
from espq.sim.fakequant import fake_quant

FETCHES = 1024
SEED = 10086  # ESP-PPQ's fetch seed


def _fetch(x: torch.Tensor, picks: dict[int, torch.Tensor]) -> torch.Tensor:
    flat = x.reshape(-1).float()
    n = flat.numel()
    if n <= FETCHES:
        return flat
    if n not in picks:
        gen = torch.Generator().manual_seed(SEED)
        picks[n] = torch.randperm(n, generator=gen)[:FETCHES].sort().values
    return flat[picks[n]]


def _moments(x: torch.Tensor, prefix: str) -> dict[str, Any]:
    mean, std = x.mean().item(), x.std().item()
    z = (x - mean) / std
    return {
        f"{prefix} Mean": mean,
        f"{prefix} Std": std,
        f"{prefix} Skewness": z.pow(3).mean().item(),
        f"{prefix} Kurtosis": (z.pow(4).mean() - 3).item(),
        f"{prefix} Hist": torch.histc(x, bins=32, min=x.min().item(), max=x.max().item()).tolist(),
        f"{prefix} Max": x.max().item(),
        f"{prefix} Min": x.min().item(),
    }


def _parameter(qm: QuantizedModel, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    spec = qm.plan.tensors.get(name)
    if spec is None or name not in qm.float_graph.initializers:
        return None
    f = torch.as_tensor(qm.float_graph.initializers[name]).float()
    q = fake_quant(torch.as_tensor(qm.graph.initializers[name]).float(), spec, qm.sim.rounding)
    return q, f


def statistical_analyse(
    graph: QuantizedModel,
    running_device: str,
    dataloader: Iterable[Any],
    collate_fn: Callable | None = None,
    steps: int = 8,
) -> list[dict[str, Any]]:
    """One record per (op, input/output variable) of ``graph`` (what ``espdl_quantize_*`` returned), with
    ESP-PPQ's keys ("Op name", "Variable name", "Noise:Signal Power Ratio", "Noise Mean", ...)."""
    qm = quantized_model(graph, "statistical_analyse")
    g = qm.graph
    ops = [
        n for n in g.nodes if qm.plan.node_types.get(n.name, "F32") != "F32" and n.op_type not in PASSIVE_OPS
    ]
    known = qm.float_graph.tensor_names()
    activations = list(
        dict.fromkeys(
            t for n in ops for t in (*n.inputs, *n.outputs) if t and t not in g.initializers and t in known
        )
    )
    picks: dict[int, torch.Tensor] = {}
    qs: dict[str, list[torch.Tensor]] = {t: [] for t in activations}
    fs: dict[str, list[torch.Tensor]] = {t: [] for t in activations}
    for idx, batch in enumerate(dataloader):
        feeds = cpu_inputs(collate_fn(batch) if collate_fn is not None else batch)
        q, f = qm.run(feeds, outputs=activations), qm.run_float(feeds, outputs=activations)
        for t in activations:
            qs[t].append(_fetch(torch.from_numpy(q[t]), picks))
            fs[t].append(_fetch(torch.from_numpy(f[t]), picks))
        if idx >= steps:
            break
    records = []
    for op in ops:
        variables = [(t, True, False) for t in op.inputs if t] + [(t, False, True) for t in op.outputs if t]
        for name, is_input, is_output in variables:
            if name in g.initializers:
                pair = _parameter(qm, name)
                if pair is None:
                    continue
                x_qt, x_fp = (_fetch(v, picks) for v in pair)
            elif qs.get(name):
                x_qt, x_fp = torch.cat(qs[name]), torch.cat(fs[name])
            else:
                continue
            records.append(
                {
                    "Op name": op.name,
                    "Op type": op.op_type,
                    "Is parameter": name in g.initializers,
                    "Is input": is_input,
                    "Is output": is_output,
                    "Variable name": name,
                    "Noise:Signal Power Ratio": batch_metrics(x_qt, x_fp)["snr"],
                    **_moments(x_qt - x_fp, "Noise"),
                    **_moments(x_qt, "Quantized"),
                    **_moments(x_fp, "Float"),
                }
            )
    return records
