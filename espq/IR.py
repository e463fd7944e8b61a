"""ESP-PPQ's ``esp_ppq.IR`` path for type hints and ``isinstance`` checks: ``from espq.IR import BaseGraph``.

ESP-PPQ's ``espdl_quantize_*`` return its ``BaseGraph``; espq's return a :class:`espq.QuantizedModel`,
so ``BaseGraph`` is that class (``isinstance(model, BaseGraph)`` holds for what they return). ESP-PPQ's
graph-editing API (``operations``, ``variables``...) is not reproduced: espq's IR is :mod:`espq.ir`.
This is a module, not a package, so that ``espq/IR`` and ``espq/ir`` do not collide on case-insensitive
file systems.
"""

from espq.quant.model import QuantizedModel

BaseGraph = QuantizedModel

__all__ = ["BaseGraph"]
