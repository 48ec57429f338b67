"""Environment variables of a process we start: set before its first import (CUDA reads them once)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


def apply_env(env: dict[str, str | None]) -> None:
    """Set os.environ from `env`; a None value removes the variable."""
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def environ(extra: dict[str, str | None]) -> Iterator[None]:
    """Spawned children inherit os.environ at start: the env is in place before any import.
    A None value removes the variable for the duration."""
    saved = {k: os.environ.get(k) for k in extra}
    apply_env(extra)
    try:
        yield
    finally:
        apply_env(saved)
