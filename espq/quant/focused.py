"""Focused quantization: fixed output scales for named ops (ESP-PPQ's ``quant_config_modify``,
esp_ppq_2026.md §1.8; ESP-PPQ's ``QuantConfigModifyPass`` in esp_ppq/quantization/optim/calibration.py).

ESP-PPQ overrides the calibrated scale of each named op's first output after activation calibration and
before alignment; an output whose quantization is decided by another op (a fused Relu after a Conv) is
skipped with a message. espq does the same on its plan skeleton: the op's first output names an exponent
group; the group's exponent becomes ``log2(scale)`` unless the group's statistics come from other tensors
(the output is then governed by the op that owns them, e.g. the fused Relu). Scales must be powers of two:
ESP-DL's exponents are integers.
"""

from __future__ import annotations

import difflib
import logging
import math

from espq.errors import ConfigError
from espq.ir import Graph
from espq.quant.plan import PlanSkeleton

logger = logging.getLogger(__name__)


def scale_exponent(op_name: str, scale: float) -> int:
    """The integer exponent of ``scale`` (a positive power of two), else a ConfigError naming the op."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    e = math.log2(value) if value > 0 and math.isfinite(value) else math.nan
    if math.isnan(e) or e != round(e):
        raise ConfigError(
            f"quant_config_modify_setting.custom_config['{op_name}'] = {scale!r}: espq's targets use "
            "power-of-two scales; give 2**k (e.g. 0.0625 = 2**-4)"
        )
    return int(round(e))


def focused_group_exponents(
    graph: Graph, skeleton: PlanSkeleton, output_scales: dict[str, float]
) -> dict[str, int]:
    """Group id -> fixed exponent for ``output_scales`` ({op name: scale}); ops whose output is governed
    by another op's statistics are skipped with a log line, as ESP-PPQ does."""
    fixed: dict[str, int] = {}
    names = [n.name for n in graph.nodes]
    for op_name, scale in output_scales.items():
        e = scale_exponent(op_name, scale)
        if op_name not in names:
            near = difflib.get_close_matches(op_name, names, n=3)
            hint = f"; did you mean {', '.join(repr(n) for n in near)}?" if near else ""
            raise ConfigError(
                f"quant_config_modify_setting.custom_config: no op named '{op_name}' in the model{hint}"
            )
        out = graph.node(op_name).outputs[0]
        spec = skeleton.plan.tensors.get(out)
        if spec is None or spec.group is None:
            raise ConfigError(
                f"quant_config_modify_setting.custom_config: op '{op_name}' has no quantized activation "
                "output (a float or parameter-only op); remove it from custom_config"
            )
        masters = skeleton.group_masters.get(spec.group, [])
        if out not in masters:
            owners = sorted({p.name for t in masters if (p := graph.producer(t)) is not None})
            logger.warning(
                "focused quantization: skipped '%s': its output is quantized with %s", op_name,
                ", ".join(f"'{o}'" for o in owners) or "another tensor",
            )  # fmt: skip
            continue
        fixed[spec.group] = e
        logger.info("focused quantization: op '%s' output exponent set to %d", op_name, e)
    return fixed


__all__ = ["focused_group_exponents", "scale_exponent"]
