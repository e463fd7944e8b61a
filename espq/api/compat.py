"""Smaller ESP-PPQ ``esp_ppq.api`` names Espressif's example scripts use: ``generate_test_value`` and the
``ENABLE_CUDA_KERNEL`` / ``DISABLE_CUDA_KERNEL`` context managers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

import torch

from espq.executor.torch import TorchExecutor, cpu_inputs
from espq.quant.model import QuantizedModel
from espq.sim.float import prepare_inputs


def generate_test_value(
    graph: QuantizedModel,
    running_device: str,
    inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
    output_names: Sequence[str] | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """``{"inputs": {name: tensor}, "outputs": {name: tensor}}``: ``inputs`` by graph-input name and the
    fake-quant outputs (graph outputs, or ``output_names``), as ESP-PPQ's function returns them.

    espq's exporter computes the test values it embeds itself (``export_test_values=True``); this is the
    same simulation for scripts that call the function directly.
    """
    executor = TorchExecutor(graph=graph, device=running_device)
    outputs = executor.forward(inputs, output_names=output_names)
    feeds = prepare_inputs(graph.graph, cpu_inputs(inputs))
    names = list(graph.graph.outputs) if output_names is None else [str(n) for n in output_names]
    return {
        "inputs": {k: v.clone().to(running_device) for k, v in feeds.items()},
        "outputs": dict(zip(names, outputs)),
    }


class ENABLE_CUDA_KERNEL:  # noqa: N801 - ESP-PPQ's name
    """ESP-PPQ's switch to its CUDA quantization kernels. espq has none (it simulates on the CPU, with
    the same numbers either way), so ``with ENABLE_CUDA_KERNEL():`` changes nothing."""

    def __enter__(self) -> ENABLE_CUDA_KERNEL:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class DISABLE_CUDA_KERNEL(ENABLE_CUDA_KERNEL):  # noqa: N801 - ESP-PPQ's name
    """The opposite switch; also changes nothing in espq."""
