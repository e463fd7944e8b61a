"""ESP-PPQ's error-analysis functions (``esp_ppq.quantization.analyse``) on espq's analysis.

``graphwise_error_analyse`` and ``layerwise_error_analyse`` return ``{op name: value}`` from
:func:`espq.analysis.analyse` (same meanings as ESP-PPQ's, esp_ppq_facts.md §5); ``statistical_analyse``
returns ESP-PPQ's per-variable records (:mod:`espq.quantization.analyse.statistical`). The ``graph`` is
what ``espdl_quantize_*`` returned (an :class:`espq.QuantizedModel`); espq computes on the CPU whatever
``running_device`` says.
"""

from espq.quantization.analyse.errors import graphwise_error_analyse, layerwise_error_analyse
from espq.quantization.analyse.statistical import statistical_analyse

__all__ = ["graphwise_error_analyse", "layerwise_error_analyse", "statistical_analyse"]
