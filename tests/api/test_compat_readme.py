"""The README's ESP-PPQ 1.3.12 settings table is the one generated from the settings object."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from espq.api.compat_table import settings_table_markdown
from espq.api.setting_support import FIELDS

ROOT = Path(__file__).resolve().parents[2]
WHEEL = json.loads((Path(__file__).parent / "data" / "esp_ppq_1_3_12_settings.json").read_text())["fields"]


def _tool():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "tools" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_settings_table_is_generated():
    tool = _tool()
    text = (ROOT / "README.md").read_text()
    block = text.split(tool.SETTINGS_BEGIN, 1)[1].split(tool.SETTINGS_END, 1)[0]
    assert block.strip() == settings_table_markdown().strip(), (
        "README out of date: run python tools/update_readme.py"
    )


def test_table_covers_every_esp_ppq_field():
    table = settings_table_markdown()
    rows = table.splitlines()[2:]
    for path in WHEEL:
        if FIELDS[path].switch and FIELDS[path].status == "part of a switch":
            prefix, name = path.rsplit(".", 1)
            assert any(r.startswith(f"| `{prefix}.*` (") and name in r for r in rows), path
        else:
            assert sum(r.startswith(f"| `{path}` |") for r in rows) == 1, path
    assert "| `tqt_optimization` | `False` | implemented |" in table
    assert "| `blockwise_reconstruction` | `False` | implemented |" in table
    assert "| `ssd_equalization` | `False` | not implemented |" in table
    assert "| `lut_optimization_setting.step` | `32` | implemented |" in table
