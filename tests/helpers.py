"""Shared by the tests: write scenario files and run the CLI as a user would."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

FAST = dict(device="cpu", iterations=8, warmup=1, repeats=1)


def tiny(name: str, model: str, **kw) -> dict:
    return {"name": name, "model": model, "size": "tiny", "batch": 2, "seq": 16, **kw}


def write_scenario(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def tenancy(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenancy", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)
