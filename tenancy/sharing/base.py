"""The contract every sharing mode fulfils, and time-slicing, the driver's default."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tenancy.launch import Launch, Outcome, run_processes


class SharingMode:
    """Separate processes on one device, which the driver time-slices."""

    def __init__(self, name: str) -> None:
        self.name = name

    def check(self, scenario, device: str) -> None:
        """Raise TenancyError (one line) when this mode cannot run here."""

    @contextmanager
    def session(self, run_dir: Path) -> Iterator[dict[str, Any]]:
        """Lives around the shared phase; the dict it yields goes into the manifest."""
        yield {"mode": self.name}

    def env(self, tenant) -> dict[str, str]:
        """Environment of a shared-phase tenant, applied before torch is imported."""
        return {}

    def before_start(self, pids: dict[str, int]) -> None:
        """Called once every tenant is warm, before the window opens; raise to abort the launch."""

    def launch(self, launch: Launch) -> dict[str, Outcome]:
        return run_processes(launch)

    @staticmethod
    def launch_solo(launch: Launch) -> dict[str, Outcome]:
        """The solo phase is the exclusive baseline: a plain process whatever the mode."""
        return run_processes(launch)
