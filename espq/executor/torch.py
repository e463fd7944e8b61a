"""``TorchExecutor`` for scripts written against ESP-PPQ's ``esp_ppq.executor.torch``.

A thin wrapper around :meth:`espq.QuantizedModel.run` (the fake-quant simulator that the exporter and
the integer runner agree with): ``TorchExecutor(graph=qm, device="cpu")(batch)`` returns the graph
outputs as a list of torch tensors, as ESP-PPQ's executor does on the graph ``espdl_quantize_*``
returns. espq simulates on the CPU; the results are moved to ``device``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from espq.errors import ConfigError
from espq.quant.model import QuantizedModel


def cpu_inputs(inputs: Any) -> Any:
    """Inputs with every torch tensor moved to the CPU (the simulator's device)."""
    if isinstance(inputs, torch.Tensor):
        return inputs.detach().cpu()
    if isinstance(inputs, Mapping):
        return {k: cpu_inputs(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [cpu_inputs(v) for v in inputs]
    return inputs


class TorchExecutor:
    """Fake-quant inference of a :class:`~espq.QuantizedModel` with ESP-PPQ's executor interface."""

    def __init__(self, graph: QuantizedModel, fp16_mode: bool = False, device: str = "cpu") -> None:
        if not isinstance(graph, QuantizedModel):
            raise ConfigError(
                f"TorchExecutor(graph=...) needs the model espdl_quantize_* / espq.quantize returned, got "
                f"{type(graph).__name__}"
            )
        if fp16_mode:
            raise ConfigError(
                "TorchExecutor(fp16_mode=True): espq simulates in float32; pass fp16_mode=False"
            )
        try:
            self._device = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ConfigError(f"TorchExecutor: invalid device {device!r} ({exc})") from exc
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"TorchExecutor: device {device!r} is not available here; use device='cpu'")
        self._graph = graph

    def forward(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        output_names: Sequence[str] | None = None,
        hooks: Any = None,
    ) -> list[torch.Tensor]:
        """Outputs (graph outputs, or the tensors named in ``output_names``) for ``inputs``: one tensor,
        a list in graph-input order, or a dict by input name."""
        if hooks:
            raise ConfigError(
                "TorchExecutor hooks are not supported by espq; for intermediate tensors pass output_names, "
                "for per-op errors use espq.quantization.analyse"
            )
        names = list(self._graph.graph.outputs) if output_names is None else [str(n) for n in output_names]
        known = self._graph.graph.tensor_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ConfigError(f"TorchExecutor: the model has no tensor(s) {unknown}")
        res = self._graph.run(cpu_inputs(inputs), outputs=names)
        return [torch.from_numpy(res[n]).to(self._device) for n in names]

    def __call__(
        self,
        inputs: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
        output_names: Sequence[str] | None = None,
    ) -> list[torch.Tensor]:
        """Same as :meth:`forward`."""
        return self.forward(inputs, output_names)
