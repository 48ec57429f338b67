"""The study directory's index: study.json (full) and sweep.csv (one row per run).

Runs that execute elsewhere (a Slurm task, a process pinned to one GPU) never write the index:
each writes its own row to `_tasks/<run>.json` atomically, and whoever watches the study (the
sweep, or `tenancy sweep --status`) merges those rows in. No two writers share a file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tenancy.core import results
from tenancy.core.errors import TenancyError

STUDY_JSON, SWEEP_CSV, TASKS = "study.json", "sweep.csv", "_tasks"
SCHEMA_VERSION = 1


class Study:
    """study.json and sweep.csv of one study directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "created": results.utc_now(), "runs": []}
        index = path / STUDY_JSON
        if index.exists():
            try:
                self.data = json.loads(index.read_text())
            except ValueError:
                raise TenancyError(f"{index}: unreadable study index; move it away to start afresh") from None

    def row(self, name: str) -> dict[str, Any]:
        for r in self.data["runs"]:
            if r["name"] == name:
                return r
        row: dict[str, Any] = {"name": name}
        self.data["runs"].append(row)
        return row

    def merge_tasks(self) -> list[dict[str, Any]]:
        """Take in the rows tasks wrote since the last merge; returns the rows that changed."""
        changed = []
        for record in read_tasks(self.path):
            row = self.row(record["name"])
            if row.get("task_written") != record.get("task_written"):
                row.update(record)
                changed.append(row)
        return changed

    def write(self) -> None:
        self.data["updated"] = results.utc_now()
        self.path.mkdir(parents=True, exist_ok=True)
        results.write_json(self.path / STUDY_JSON, self.data)
        flat = pd.DataFrame([{k: v for k, v in r.items() if k not in ("axes", "task_written")} |
                             {f"axis:{k}": v for k, v in (r.get("axes") or {}).items()}
                             for r in self.data["runs"]])
        results.write_table(self.path / SWEEP_CSV, flat)


def write_task(study_dir: Path, row: dict[str, Any]) -> None:
    """One task's row, written atomically where the study's watcher will find it."""
    folder = study_dir / TASKS
    folder.mkdir(parents=True, exist_ok=True)
    results.write_json(folder / f"{row['name']}.json", {**row, "task_written": time.time_ns()})


def read_tasks(study_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((study_dir / TASKS).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now: read again at the next merge
    return out
