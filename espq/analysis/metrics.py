"""Error metrics between a quantized and a float tensor, as ESP-PPQ computes them (esp_ppq_facts.md §5.1).

* ``snr``: noise-to-signal power ratio per sample, Σ(q − f)² / (Σf² + 1e-7), mean over the batch.
* ``cosine``: cosine similarity per sample, mean over the batch.
* ``mse``: mean squared error per sample, mean over the batch.

Dimension 0 is the sample axis; a 1-D tensor is one sample. :class:`Recorder` keeps ESP-PPQ's running
mean weighted by each update's batch size (``MeasureRecorder``).
"""

from __future__ import annotations

import torch

METRICS = ("snr", "cosine", "mse")
LABELS = {"snr": "NOISE:SIGNAL POWER RATIO", "cosine": "COSINE SIMILARITY", "mse": "MSE LOSS(UNSCALED)"}
SNR_EPS = 1e-7
COS_EPS = 1e-8  # torch.cosine_similarity's


def _per_sample_sums(q: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-sample Σ(q−f)², Σf², Σq², Σq·f and element count, summed over all non-batch axes in any memory
    layout (no flattening copy of channels-last tensors)."""
    if q.ndim <= 1:
        q, f = q.reshape(1, -1), f.reshape(1, -1)
    q, f = q.float(), f.float()
    dims = tuple(range(1, q.ndim))
    d = q - f
    noise = torch.linalg.vector_norm(d, dim=dims).double() ** 2
    signal = torch.linalg.vector_norm(f, dim=dims).double() ** 2
    qq = torch.linalg.vector_norm(q, dim=dims).double() ** 2
    d.copy_(q).mul_(f)  # reuse the buffer for q·f
    qf = d.sum(dim=dims).double()
    count = max(1, q[0].numel())
    return noise, signal, qq, qf, count


def batch_metrics(q: torch.Tensor, f: torch.Tensor) -> dict[str, float]:
    """Batch means of every metric in :data:`METRICS` for quantized ``q`` against float ``f``."""
    if q.shape != f.shape:
        raise ValueError(f"cannot compare tensors of shapes {tuple(q.shape)} and {tuple(f.shape)}")
    noise, signal, qq, qf, count = _per_sample_sums(q.detach(), f.detach())
    cos = qf / (qq.sqrt().clamp_min(COS_EPS) * signal.sqrt().clamp_min(COS_EPS))
    return {
        "snr": float((noise / (signal + SNR_EPS)).mean()),
        "cosine": float(cos.mean()),
        "mse": float((noise / count).mean()),
    }


def batch_size(t: torch.Tensor) -> int:
    """Weight ESP-PPQ gives a comparison: ``shape[0]`` (the batch size; the length of a 1-D tensor)."""
    return int(t.shape[0]) if t.ndim >= 1 else 1


class Recorder:
    """Running means of all metrics, weighted by batch size (ESP-PPQ's ``MeasureRecorder``)."""

    def __init__(self) -> None:
        self.count = 0
        self.sums = dict.fromkeys(METRICS, 0.0)

    def update(self, q: torch.Tensor, f: torch.Tensor) -> None:
        """Add one comparison; its weight is the batch size."""
        n = batch_size(f)
        for k, v in batch_metrics(q, f).items():
            self.sums[k] += v * n
        self.count += n

    def value(self, metric: str) -> float:
        return self.sums[metric] / self.count if self.count else float("nan")

    def values(self) -> dict[str, float]:
        return {m: self.value(m) for m in METRICS}
