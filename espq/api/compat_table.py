"""The README's ESP-PPQ 1.3.12 settings table, generated from the settings object and
:data:`espq.api.setting_support.FIELDS` (``tools/update_readme.py``), so it cannot drift."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

from espq.api.setting_support import FIELDS, PART, get_field
from espq.api.settings import QuantizationSettingFactory


def _paths(obj: Any, prefix: str = "") -> list[str]:
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        out += _paths(value, f"{prefix}{f.name}.") if is_dataclass(value) else [f"{prefix}{f.name}"]
    return out


def _show(value: Any) -> str:
    if isinstance(value, Enum):
        return f"`{value.name}`"
    if isinstance(value, list) and len(value) > 3:
        return f"{len(value)} names"
    if isinstance(value, str) and len(value) > 30:
        return "text"
    return f"`{value!r}`"


def settings_table_markdown() -> str:
    """One row per field of ``QuantizationSettingFactory.espdl_setting()`` (sub-setting fields only read
    by a switch espq does not implement share one row): value, espq's status, note."""
    setting = QuantizationSettingFactory.espdl_setting()
    paths = _paths(setting)
    groups: dict[str, list[str]] = {}
    for path in paths:
        if FIELDS[path].status == PART:
            groups.setdefault(FIELDS[path].switch or "", []).append(path)
    rows = [
        "| field | `espdl_setting()` value | espq | what espq does / nearest espq feature |",
        "|---|---|---|---|",
    ]
    for path in paths:
        rule = FIELDS[path]
        if rule.status != PART:
            rows.append(f"| `{path}` | {_show(get_field(setting, path))} | {rule.status} | {rule.note} |")
        elif rule.switch in groups:  # one row for the switch's sub-setting fields
            members = groups.pop(rule.switch)
            prefix = members[0].rsplit(".", 1)[0]
            names = ", ".join(m.rsplit(".", 1)[1] for m in members)
            rows.append(
                f"| `{prefix}.*` ({names}) | defaults | {PART} | only read with `{rule.switch}=True` |"
            )
    return "\n".join(rows) + "\n"
