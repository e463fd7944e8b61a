"""``graphwise_error_analyse`` / ``layerwise_error_analyse`` with ESP-PPQ's signatures, on espq's analysis."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from espq.analysis import analyse
from espq.analysis.kinds import TITLES
from espq.analysis.report import format_table
from espq.errors import ConfigError
from espq.quant.model import QuantizedModel


def quantized_model(graph: Any, function: str) -> QuantizedModel:
    """``graph`` when it is what ``espdl_quantize_*`` return; else a ConfigError naming ``function``."""
    if not isinstance(graph, QuantizedModel):
        raise ConfigError(
            f"{function}(graph=...) needs the model espdl_quantize_* returned, got {type(graph).__name__}"
        )
    return graph


def _run(
    graph: Any, function: str, kind: str, dataloader: Iterable[Any], collate_fn: Callable | None,
    method: str, steps: int, verbose: bool,
) -> dict[str, float]:  # fmt: skip
    qm = quantized_model(graph, function)
    report = analyse(
        qm, dataloader, steps=steps, kinds=(kind,), collate_fn=collate_fn, progress=verbose, metric=method
    )
    values = getattr(report, kind)
    if verbose and values:
        print(TITLES[kind])
        print(format_table(values, method))
    return values


def graphwise_error_analyse(
    graph: QuantizedModel,
    running_device: str,
    dataloader: Iterable[Any],
    collate_fn: Callable | None = None,
    method: str = "snr",
    steps: int = 8,
    verbose: bool = True,
    fetchs: int = 4096,
) -> dict[str, float]:
    """Accumulated error of each quantized computing op ({op name: value}; ``method`` snr / cosine / mse).

    ESP-PPQ compares ``fetchs`` sampled elements per tensor; espq compares whole tensors.
    """
    return _run(graph, "graphwise_error_analyse", "graphwise", dataloader, collate_fn, method, steps, verbose)


def layerwise_error_analyse(
    graph: QuantizedModel,
    dataloader: Iterable[Any],
    interested_outputs: str | list[str] | None = None,
    collate_fn: Callable | None = None,
    running_device: str = "cuda",
    method: str = "snr",
    steps: int = 8,
    verbose: bool = True,
) -> dict[str, float]:
    """Error at the graph outputs with only one op quantized, per op ({op name: value})."""
    if interested_outputs is not None:
        raise ConfigError(
            "layerwise_error_analyse(interested_outputs=...): espq measures at every graph output; pass None"
        )
    return _run(graph, "layerwise_error_analyse", "layerwise", dataloader, collate_fn, method, steps, verbose)
