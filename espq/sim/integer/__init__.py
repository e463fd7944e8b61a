"""Bit-exact ESP-DL integer execution of `.espdl` files (esp_dl_facts.md §4).

Public API::

    IntegerRunner(model_or_path, target=None).run(inputs, raw=False, outputs=None) -> dict[str, ndarray]
    run_espdl(path_or_model, inputs, target=None, raw=False, outputs=None) -> dict[str, ndarray]
    check_test_values(path_or_model, target=None) -> CheckReport     # the on-device Model::test()
"""

from __future__ import annotations

from espq.sim.integer.base import INT_KERNELS, IntContext, QTensor, register_int
from espq.sim.integer.check import CheckReport, NoTestValuesError, TensorCheck, check_test_values
from espq.sim.integer.runner import IntegerRunner, load_kernels, run_espdl

__all__ = [
    "INT_KERNELS",
    "CheckReport",
    "IntContext",
    "IntegerRunner",
    "NoTestValuesError",
    "QTensor",
    "TensorCheck",
    "check_test_values",
    "load_kernels",
    "register_int",
    "run_espdl",
]
