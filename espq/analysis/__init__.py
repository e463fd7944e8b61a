"""Quantization error analysis: graphwise / layerwise / isolated per-op error of a quantized model against
its float model (:func:`analyse`, in :mod:`espq.analysis.pipeline`), and the report it returns."""

from espq.analysis.kinds import KINDS
from espq.analysis.pipeline import analyse, clip_ratio
from espq.analysis.report import AnalysisReport, format_table

__all__ = ["KINDS", "AnalysisReport", "analyse", "clip_ratio", "format_table"]
