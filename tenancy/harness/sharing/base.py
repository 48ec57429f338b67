"""The contract every sharing mode fulfils, and time-slicing, the driver's default."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tenancy.harness.launch import Launch, Outcome, run_processes

Env = dict[str, "str | None"]  # None: remove the variable from the tenant's environment
RECORDED = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_MPS_PIPE_DIRECTORY",
            "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE", "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT")


def recorded_env(env: Env) -> dict[str, str | None]:
    """The CUDA/MPS variables a tenant started with: its own `env` over what it inherited."""
    return {k: env[k] if k in env else os.environ.get(k) for k in RECORDED}


def without_mps(pipe_dir: Path | None) -> Env:
    """Every inherited CUDA_MPS_* variable removed and, when given, the pipe directory set to
    `pipe_dir`: the CUDA driver connects to whatever daemon it finds there at start-up, so a tenant
    outside our MPS session must find an empty directory (not a system daemon's default one)."""
    env: Env = {k: None for k in os.environ if k.startswith("CUDA_MPS_")}
    if pipe_dir is not None:
        env["CUDA_MPS_PIPE_DIRECTORY"] = str(pipe_dir)
    return env


class SharingMode:
    """Separate processes on one device, which the driver time-slices."""

    def __init__(self, config, device: str = "cpu") -> None:
        """`config`: the scenario's sharing block (tenancy.harness.scenario.Sharing), the mode's own settings."""
        self.config, self.name, self.device = config, config.mode, device
        self._no_mps: Path | None = None

    def check(self) -> None:
        """Raise TenancyError (one line) when this mode cannot run here; changes nothing."""

    @contextmanager
    def isolated(self) -> Iterator[None]:
        """Lives around the whole run: an empty private pipe directory for every launch that is not
        under our MPS daemon, removed at the end."""
        self._no_mps = Path(tempfile.mkdtemp(prefix="tenancy-nomps-", dir="/tmp"))
        try:
            yield
        finally:
            shutil.rmtree(self._no_mps, ignore_errors=True)
            self._no_mps = None

    @contextmanager
    def session(self, run_dir: Path) -> Iterator[dict[str, Any]]:
        """Lives around a shared launch; the dict it yields goes into the manifest."""
        yield {"mode": self.name}

    def solo_env(self, tenant) -> Env:
        """Environment of a solo (exclusive baseline) tenant: never under MPS."""
        return without_mps(self._no_mps)

    def env(self, tenant) -> Env:
        """Environment of a shared-launch tenant, applied before torch is imported."""
        return without_mps(self._no_mps)

    def before_start(self, pids: dict[str, int]) -> None:
        """Called once every tenant is warm, before the window opens; raise to abort the launch."""

    def launch(self, launch: Launch) -> dict[str, Outcome]:
        return run_processes(launch)

    @staticmethod
    def launch_solo(launch: Launch) -> dict[str, Outcome]:
        """The solo phase is the exclusive baseline: a plain process whatever the mode."""
        return run_processes(launch)
