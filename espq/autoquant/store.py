"""AutoQuant's run directory, laid out as ESP-PPQ 1.3.12 lays it out (esp_ppq/autoquant/save.py):

* ``summary.json``: every finished run, in run order (one record per configuration and rung);
* ``candidates.json``: the Top-K finalists, best first;
* ``NNNN/config.json`` per configuration (its settings and every rung result), and for finalists the
  exported ``.espdl`` / ``.info`` / ``.json`` beside it.

Each file is rewritten atomically after every run, so an interrupted search resumes where it stopped
(``resume=True``); without ``resume`` the numbered folders and both index files start empty.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from espq.errors import ConfigError
from espq.utils import atomic_write_text


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _load_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot resume from {path}: {e}; rerun with resume=False") from e
    if not isinstance(data, list) or any(not isinstance(r, dict) for r in data):
        raise ConfigError(f"cannot resume from {path}: not a JSON list of records; rerun with resume=False")
    return data


class RunStore:
    """Reads and writes one search's run directory; ``describe(config_json)`` adds fields to every record
    (the ESP-PPQ-compatible API stores each configuration's ESP-PPQ ``strategy``/``params`` this way)."""

    def __init__(
        self,
        run_dir: str | Path,
        resume: bool,
        describe: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.root = Path(run_dir)
        self.describe = describe
        self.summary_path = self.root / "summary.json"
        self.candidates_path = self.root / "candidates.json"
        if resume:
            missing = [str(p) for p in (self.summary_path, self.candidates_path) if not p.is_file()]
            if missing:
                raise ConfigError(f"resume=True needs {' and '.join(missing)}; rerun with resume=False")
            self.summary = _load_list(self.summary_path)
        else:
            if self.root.is_dir():
                for child in self.root.iterdir():
                    if child.is_dir() and child.name.isdigit():
                        shutil.rmtree(child)
            self.root.mkdir(parents=True, exist_ok=True)
            self.summary = []
            atomic_write_text(self.summary_path, _dump([]))
            atomic_write_text(self.candidates_path, _dump([]))
        self.index: dict[str, int] = {}
        for r in self.summary:
            self.index.setdefault(r["hash"], int(r["index"]))

    def done(self, key: str, stage: str, batches: int) -> dict[str, Any] | None:
        """The finished record of configuration ``key`` at ``stage``/``batches``, if any."""
        for r in self.summary:
            if r["hash"] == key and r["stage"] == stage and r["batches"] == batches:
                return r
        return None

    def folder(self, key: str) -> Path:
        """The configuration's numbered folder (numbers given in first-run order)."""
        if key not in self.index:
            self.index[key] = max(self.index.values(), default=-1) + 1
        return self.root / f"{self.index[key]:04d}"

    def add(self, record: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` (needs ``hash``, ``stage``, ``batches``) to the summary and the configuration's
        ``config.json``; returns the record with ``index`` and ``folder`` filled in."""
        folder = self.folder(record["hash"])
        folder.mkdir(parents=True, exist_ok=True)
        extra = self.describe(config) if self.describe is not None else {}
        record = {**record, **extra, "index": self.index[record["hash"]], "folder": str(folder)}
        self.summary.append(record)
        runs = [r for r in self.summary if r["hash"] == record["hash"]]
        atomic_write_text(folder / "config.json", _dump({"config": config, "runs": runs}))
        atomic_write_text(self.summary_path, _dump(self.summary))
        return record

    def write_candidates(self, candidates: list[dict[str, Any]]) -> None:
        """Rewrite ``candidates.json``."""
        atomic_write_text(self.candidates_path, _dump(candidates))


__all__ = ["RunStore"]
