"""Parameter counts kept across runs, in the user's cache directory.

Why: counting a model's parameters means building it on the meta device, which imports the
model's code and transformers' modeling machinery: ~3 s at the start of every `tenancy run` on
this project's 2-core machine, for a number that only changes with the config or transformers.
An entry is keyed by transformers' version, the auto class and a digest of the whole config, so
any change counts again. The cache is an optimisation only: an unreadable, corrupt or unwritable
file means counting again, never an error.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CACHE_ENV = "TENANCY_CACHE_DIR"  # default: $XDG_CACHE_HOME/tenancy, else ~/.cache/tenancy
FILE = "params.json"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tenancy"


def key(auto_class: str, config) -> str | None:
    """None for a config that cannot be written as JSON (a custom class's own fields): not cached."""
    import transformers

    try:
        text = config.to_json_string(use_diff=False)
    except (TypeError, ValueError):
        return None
    return f"{transformers.__version__}/{auto_class}/{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def get(k: str | None) -> int | None:
    if k is None:
        return None
    value = _read(cache_dir() / FILE).get(k)
    return value if isinstance(value, int) and value > 0 else None


def put(k: str | None, n: int) -> None:
    """Add one entry; concurrent writers may drop each other's entry, which only costs a recount."""
    if k is None:
        return
    from tenancy.core import results

    path = cache_dir() / FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        results.write_json(path, {**_read(path), k: n})
    except OSError:
        pass  # a read-only cache: count again next time
