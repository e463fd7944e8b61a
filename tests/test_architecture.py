"""The package's layering: no import cycles, no target-family branches outside espq/targets, low layers
never import high ones (issue 15). Imports are read with ``ast``; ``TYPE_CHECKING`` blocks do not count,
function-level (lazy) imports do."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import espq

ROOT = Path(espq.__file__).parent

#: Each package and the packages it may import (besides espq.errors, espq.utils, espq._version).
LAYERS = {
    "espq.ir": {"espq.ir"},
    "espq.targets": {"espq.ir", "espq.targets"},
    "espq.espdl": {"espq.ir", "espq.targets", "espq.espdl"},
    "espq.frontends": {"espq.ir", "espq.frontends"},
    "espq.sim": {"espq.ir", "espq.targets", "espq.espdl", "espq.sim"},
}
BASE = {"espq.errors", "espq.utils", "espq._version"}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_low_layers_never_import_high_ones():
    bad = []
    for mod, deps in _graph().items():
        layer = next((k for k in LAYERS if mod == k or mod.startswith(k + ".")), None)
        if layer is None:
            continue
        for dep in deps - BASE:
            if not any(dep == ok or dep.startswith(ok + ".") for ok in LAYERS[layer]):
                bad.append(f"{mod} -> {dep}")
    assert bad == []


_FAMILY_TEST = re.compile(r"\.family\s*(==|!=|in\b)|\.name\s*(==|!=)\s*['\"](esp32|c['\"])")


def test_no_target_family_branches_outside_targets():
    hits = []
    for path in ROOT.rglob("*.py"):
        if path.is_relative_to(ROOT / "targets"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _FAMILY_TEST.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert hits == []
