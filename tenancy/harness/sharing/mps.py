"""`sharing: mps`: separate processes that are clients of one MPS server, with per-tenant limits.

A daemon (MpsDaemon) lives around each shared launch; every tenant gets that daemon's pipe
directory and its own SM share and pinned-memory limit through the environment (inherited
CUDA_MPS_* variables removed), before its CUDA context exists. A client's thread percentage can
only tighten the daemon's default, so the effective value (the minimum) is recorded per tenant.
Once all tenants are warm, the daemon's client list must name every tenant pid: a client that
cannot reach the daemon silently runs without MPS, so this check is the only proof.

The compute mode is left alone unless the scenario opts in (`sharing: {mode: mps, exclusive_process: true}` or
`tenancy run --mps-exclusive-process`): then the card is set to EXCLUSIVE_PROCESS with nvidia-smi
for the shared phase and its previous mode restored afterwards (needs root and a card you own).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tenancy.core.errors import EXIT_FAILED, TenancyError
from tenancy.gpu.mps_daemon import CONTROL, MpsDaemon
from tenancy.harness.launch import Launch, Outcome, run_processes
from tenancy.harness.sharing.base import Env, SharingMode, without_mps

CONTROL_ENV = "TENANCY_MPS_CONTROL"  # path or name of nvidia-cuda-mps-control (tests: a stand-in)
NVIDIA_SMI_ENV = "TENANCY_NVIDIA_SMI"
ALLOW_CPU_ENV = "TENANCY_MPS_ALLOW_CPU"  # testing only: run the MPS machinery with device cpu
SMI_MODES = {"default": "DEFAULT", "exclusive_process": "EXCLUSIVE_PROCESS", "prohibited": "PROHIBITED",
             "exclusive_thread": "EXCLUSIVE_THREAD"}


class MpsAttachError(TenancyError):
    """A tenant is not a client of our MPS server: the shared phase would not be under MPS."""

    exit_code = EXIT_FAILED


class MpsMode(SharingMode):
    def __init__(self, config, device: str = "cuda", control: str | None = None, nvidia_smi: str | None = None) -> None:
        super().__init__(config, device)
        self.control = control or os.environ.get(CONTROL_ENV) or CONTROL
        self.nvidia_smi = nvidia_smi or os.environ.get(NVIDIA_SMI_ENV) or "nvidia-smi"
        self.default_thread_percentage: int | None = config.default_thread_percentage
        self.exclusive_process: bool = config.exclusive_process
        self._daemon: MpsDaemon | None = None
        self._info: dict[str, Any] = {}

    def check(self) -> None:
        device = self.device
        if device != "cuda" and os.environ.get(ALLOW_CPU_ENV) != "1":
            raise TenancyError(f"sharing: mps needs device cuda (NVIDIA MPS), not {device}; "
                               "use sharing: timeslice or streams on a CPU")
        if shutil.which(self.control) is None:
            raise TenancyError(f"sharing: mps needs {self.control} on PATH (it ships with the NVIDIA driver); "
                               f"install the driver utilities or set {CONTROL_ENV}")
        if self.exclusive_process and shutil.which(self.nvidia_smi) is None:
            raise TenancyError(f"sharing.exclusive_process needs {self.nvidia_smi} on PATH")

    @contextmanager
    def session(self, run_dir: Path) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"mode": self.name, "attach": []}
        daemon = MpsDaemon(run_dir, self.control, self.default_thread_percentage)
        compute = ComputeMode(self.nvidia_smi) if self.exclusive_process else None
        try:
            if compute:
                info["compute_mode"] = compute.set_exclusive()
            info.update(daemon.start())
            self._daemon, self._info = daemon, info
            yield info
        finally:
            info.update(daemon.stop())  # first the daemon, then the card's mode
            if compute:
                info["compute_mode"] = compute.restore()
            self._daemon = None

    def env(self, tenant) -> Env:
        if self._daemon is None:
            raise RuntimeError("MpsMode.env outside its session")
        env: Env = {**without_mps(None), **self._daemon.env}
        requested = tenant.mps.active_thread_percentage
        if requested is not None:
            env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(requested)
        if tenant.mps.pinned_mem_limit is not None:
            env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={tenant.mps.pinned_mem_limit}"
        default = self._info.get("default_active_thread_percentage")
        shares = [v for v in (default, requested) if v is not None]
        self._info.setdefault("effective_active_thread_percentage", {})[tenant.name] = min(shares) if shares else None
        return env

    def before_start(self, pids: dict[str, int]) -> None:
        """Every tenant pid must be a client of one of our servers; recorded per launch."""
        assert self._daemon is not None
        record: dict[str, Any] = {"tenants": dict(pids)}
        self._info["attach"].append(record)
        try:
            servers = self._daemon.servers()
            clients = {s: self._daemon.clients(s) for s in servers}
        except TenancyError as err:
            record["error"] = str(err)
            raise MpsAttachError(f"MPS attachment check failed: {err}") from None
        record["servers"] = servers
        record["clients"] = {str(s): c for s, c in clients.items()}
        attached = {p for c in clients.values() for p in c}
        # an endpoint tenant reports its server's pid, its group's id: an engine whose CUDA
        # client is a worker of that group (vLLM's EngineCore) is attached through the worker
        attached |= {g for g in map(_pgid, attached) if g is not None}
        missing = {key: pid for key, pid in pids.items() if pid not in attached}
        record["missing"] = missing
        if missing:
            who = ", ".join(f"{key.split('/')[2]}#{key.split('/')[3]} (pid {pid})" for key, pid in missing.items())
            raise MpsAttachError(
                f"MPS attachment check failed: {who} not a client of our MPS server(s) {servers or '(none)'}; "
                f"such a tenant runs without MPS (see {self._daemon.log_dir})")

    def launch(self, launch: Launch) -> dict[str, Outcome]:
        try:
            return run_processes(launch)
        except MpsAttachError as err:
            for out in launch.outcomes.values():
                if out.status == "pending":
                    out.status, out.message = "aborted", f"not measured: {err}"
            raise


class ComputeMode:
    """The card's compute mode, set to EXCLUSIVE_PROCESS for the session and then put back."""

    def __init__(self, nvidia_smi: str, gpu: str | None = None) -> None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()  # the run's UUID
        self.nvidia_smi = nvidia_smi
        self.gpu = gpu or visible or "0"
        self.previous: str | None = None

    def _smi(self, *args: str) -> str:
        try:
            proc = subprocess.run([self.nvidia_smi, "-i", self.gpu, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise TenancyError(f"nvidia-smi {' '.join(args)} failed: {err}") from None
        if proc.returncode != 0:
            why = " ".join((proc.stderr or proc.stdout).split())[:200]
            raise TenancyError(f"nvidia-smi {' '.join(args)} failed (exit {proc.returncode}): {why}; "
                               "changing the compute mode needs root and a card you own")
        return proc.stdout.strip()

    def current(self) -> str:
        return self._smi("--query-gpu=compute_mode", "--format=csv,noheader").lower().replace(" ", "_")

    def set_exclusive(self) -> dict[str, Any]:
        self.previous = self.current()
        self._smi("-c", "EXCLUSIVE_PROCESS")
        return {"gpu": self.gpu, "previous": self.previous, "during": "exclusive_process"}

    def restore(self) -> dict[str, Any]:
        """Put the previous mode back; a failure is recorded, never raised (we are cleaning up)."""
        result: dict[str, Any] = {"gpu": self.gpu, "previous": self.previous, "during": "exclusive_process"}
        if self.previous is None:
            return result
        try:
            self._smi("-c", SMI_MODES.get(self.previous, "DEFAULT"))
            result["restored"] = True
        except TenancyError as err:
            result["restored"] = False
            result["restore_error"] = str(err)
        return result


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None
