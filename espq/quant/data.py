"""Calibration / analysis data: turn any iterable of batches into validated feed dicts.

Accepted batch forms: a tensor or numpy array (single-input models), a tuple/list (one item per graph
input, in order), a dict by input name; anything else through ``collate_fn``. Dataloaders that yield
``(inputs, labels)`` pairs for a single-input model are handled (the first item is taken).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch

from espq.errors import ConfigError, InputDataError
from espq.ir import Graph


def _as_array(x: Any, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:
        raise InputDataError(f"{what}: cannot convert {type(x).__name__} to an array") from exc


def _batch_to_feeds(graph: Graph, batch: Any, index: int) -> dict[str, np.ndarray]:
    names = graph.inputs
    if isinstance(batch, dict):
        unknown = sorted(set(batch) - set(names))
        missing = [n for n in names if n not in batch]
        if missing:
            raise InputDataError(
                f"batch {index}: missing input(s) {missing} (got keys {sorted(batch)}, unknown {unknown}); "
                f"yield a dict with one entry per graph input {names}"
            )
        items = [batch[n] for n in names]
    elif isinstance(batch, (list, tuple)):
        items = list(batch)
        if len(names) == 1 and len(items) >= 1 and not np.isscalar(items[0]) and _rank(items[0]) >= 1:
            if len(items) != 1 and _rank(items[0]) == len(graph.shape(names[0]) or ()):
                items = items[:1]  # (inputs, labels) pairs from a labelled dataloader
            elif len(items) != 1:
                items = [items]  # a list of samples: stack them below
        if len(items) != len(names):
            raise InputDataError(
                f"batch {index} has {len(items)} item(s) but the model has {len(names)} input(s) {names}"
            )
    else:
        items = [batch]
    feeds = {}
    for name, item in zip(names, items):
        arr = (
            np.stack([_as_array(i, f"batch {index}") for i in item])
            if isinstance(item, list)
            else _as_array(item, f"batch {index}")
        )
        feeds[name] = _check_array(graph, name, arr, index)
    return feeds


def _rank(x: Any) -> int:
    return len(x.shape) if hasattr(x, "shape") else np.ndim(x)


def _check_array(graph: Graph, name: str, arr: np.ndarray, index: int) -> np.ndarray:
    expected = graph.shape(name)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise InputDataError(f"batch {index}, input '{name}': dtype {arr.dtype} is not numeric")
    if expected is not None:
        if arr.ndim == len(expected) - 1 and tuple(arr.shape) == tuple(expected[1:]):
            arr = arr[None]  # a single sample without batch dim
        if arr.ndim != len(expected) or tuple(arr.shape[1:]) != tuple(expected[1:]):
            raise InputDataError(
                f"batch {index}, input '{name}': expected shape [N, {', '.join(map(str, expected[1:]))}] "
                f"(model input {list(expected)}), got {list(arr.shape)}"
            )
    want = graph.dtype(name) or np.dtype(np.float32)
    if np.issubdtype(want, np.floating):
        arr = arr.astype(want, copy=False)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputDataError(
                f"batch {index}, input '{name}' contains {int(np.isnan(arr).sum())} NaN and "
                f"{int(np.isinf(arr).sum())} Inf value(s); clean the data (e.g. check the preprocessing)"
            )
    return arr


def iter_feeds(
    graph: Graph,
    data: Iterable[Any],
    steps: int | None = None,
    collate_fn: Callable[[Any], Any] | None = None,
    what: str = "calibration",
) -> Iterator[dict[str, np.ndarray]]:
    """Yield ``steps`` validated feed dicts from ``data`` (repeating it, with a warning, if shorter).

    ``steps=None`` consumes the iterable once. Raises :class:`InputDataError` for an empty iterable,
    malformed batches or NaN/Inf values (naming the batch index).
    """
    if data is None:
        raise InputDataError(f"no {what} data given; pass an iterable of batches (arrays, tensors, dicts)")
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise ConfigError(f"{what} steps must be a positive integer, got {steps!r}")
    if isinstance(data, (np.ndarray, torch.Tensor)) or isinstance(data, dict):
        data = [data]
    produced = 0
    while True:
        before = produced
        iterator = iter(data)
        for batch in itertools.islice(iterator, None if steps is None else steps - produced):
            if collate_fn is not None:
                batch = collate_fn(batch)
            yield _batch_to_feeds(graph, batch, produced)
            produced += 1
        if produced == 0:
            raise InputDataError(f"the {what} data is empty (it yielded no batch); pass at least one batch")
        if steps is None or produced >= steps:
            return
        if iterator is data or produced == before:  # a one-shot iterator: it cannot be repeated
            warnings.warn(
                f"{what} data is a one-shot iterator with {produced} batch(es) < steps={steps}; using those",
                stacklevel=3,
            )
            return
        if before == 0:
            warnings.warn(
                f"{what} data has only {produced} batch(es), fewer than steps={steps}; repeating it",
                stacklevel=3,
            )
