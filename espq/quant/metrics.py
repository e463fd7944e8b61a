"""Output-error metric shared by the recipes' model selection and the accuracy steps."""

from __future__ import annotations

import numpy as np


def output_error(q: dict[str, np.ndarray], f: dict[str, np.ndarray]) -> float:
    """Noise-to-signal power ratio of ``q`` against ``f`` per sample, averaged over samples and outputs
    (ESP-PPQ's "snr" metric, esp_ppq_facts.md §5.1)."""
    errs = []
    for name, ref in f.items():
        r = ref.reshape(ref.shape[0], -1).astype(np.float64)
        d = q[name].reshape(r.shape).astype(np.float64) - r
        errs.append(float(np.mean((d**2).sum(1) / ((r**2).sum(1) + 1e-7))))
    return float(np.mean(errs))


__all__ = ["output_error"]
