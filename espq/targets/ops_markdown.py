"""The README's table of ESP-DL ops: quant types per target family, from the op table and the registry."""

from __future__ import annotations

from espq.targets import rules as r
from espq.targets.base import ExponentRule, QuantType
from espq.targets.ops_table import OP_TABLE
from espq.targets.registry import FAMILY_TARGETS

S8, S16, F32 = QuantType.S8, QuantType.S16, QuantType.F32


def supported_ops_markdown() -> str:
    """A markdown table of every ESP-DL op with its quant types per target family (for the README)."""
    families = list(FAMILY_TARGETS.items())
    header = "| op | " + " | ".join(f"{fam} ({', '.join(names)})" for fam, names in families) + " | notes |"
    sep = "|---" * (len(families) + 2) + "|"
    lines = [header, sep]
    for op in sorted(OP_TABLE):
        spec = OP_TABLE[op]
        types = ", ".join(q.value for q in (S8, S16, F32) if q in spec.quant_types)
        if spec.default_float:
            types += " (float by default)"
        remarks = []
        if spec.float_output:
            remarks.append("float32 output")
        if spec.bool_output:
            remarks.append("bool output")
        if spec.exponent_rule is ExponentRule.EQUAL:
            remarks.append("inputs/output share one exponent")
        if spec.nonnegative_shift:
            remarks.append("shift >= 0")
        if r.exporter_only in spec.rules:
            remarks.append("written by the exporter only")
        remarks.extend(
            f"{k}: {v}" if k != "*" else v for k, v in spec.notes.items() if k not in FAMILY_TARGETS
        )
        cells = [types + (" (not verified on chip)" if fam in spec.notes else "") for fam, _ in families]
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {'; '.join(remarks)} |")
    return "\n".join(lines) + "\n"
