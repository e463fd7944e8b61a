"""The README's supported-ops table is generated from the target tables and cannot drift."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_supported_ops_table_is_current():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "tools" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "README.md").read_text()
    assert mod.BEGIN in text and mod.END in text
    assert mod.render(text) == text, "README out of date: run python tools/update_readme.py"
    assert "| Conv |" in text and "| Softmax |" in text


def test_readme_has_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "espq demo" in text
    assert "python -m pytest" in text
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("python -m pytest")
