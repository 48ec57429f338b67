"""What machine a run happened on, and which device it may use.

The parent process never creates a CUDA context: GPUs are found through NVML, so that a run under
MPS has no stray client and every tenant's context is its own.
"""
from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tenancy.core.errors import TenancyError
from tenancy.gpu import devices
from tenancy.gpu.mps_processes import running_daemons

COMPUTE_MODES = {0: "default", 1: "exclusive_thread", 2: "prohibited", 3: "exclusive_process"}  # nvmlComputeMode_t


def nvml_state() -> dict[str, Any]:
    """What NVML says about this machine: driver, CUDA driver version, GPUs in PCI bus order, or
    the error that stopped it (no driver). Never raises; a field this driver does not answer is
    None (pynvml raises NVMLError, or NVMLLibraryMismatchError for a missing versioned function)."""
    state: dict[str, Any] = {"driver": None, "cuda_driver": None, "gpus": [], "error": None}
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as err:
        state["error"] = f"{type(err).__name__}: {err}"
        return state
    try:
        state["driver"] = _field(pynvml.nvmlSystemGetDriverVersion)
        cuda = _field(pynvml.nvmlSystemGetCudaDriverVersion_v2)
        state["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = _field(pynvml.nvmlDeviceGetMemoryInfo, h)
            mig = _field(pynvml.nvmlDeviceGetMigMode, h)
            mode = _field(pynvml.nvmlDeviceGetComputeMode, h)
            limit = _field(pynvml.nvmlDeviceGetPowerManagementLimit, h)
            state["gpus"].append({
                "index": i,
                "name": _field(pynvml.nvmlDeviceGetName, h),
                "uuid": _field(pynvml.nvmlDeviceGetUUID, h),
                "driver": state["driver"],
                "cuda_driver": state["cuda_driver"],
                "memory_total_mib": mem.total // 2**20 if mem else None,
                "memory_used_mib": mem.used // 2**20 if mem else None,
                "compute_mode": COMPUTE_MODES.get(mode, mode),
                "persistence_mode": _field(pynvml.nvmlDeviceGetPersistenceMode, h),
                "mig_mode": mig[0] if mig else None,  # None: the card has no MIG
                "sm_clock_max_mhz": _field(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_SM),
                "power_limit_w": limit / 1000 if limit is not None else None,
            })
    except Exception as err:
        state["error"] = f"{type(err).__name__}: {err}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
    return state


def _field(fn, *args):
    try:
        return fn(*args)
    except Exception:  # NVMLError, or NVMLLibraryMismatchError (a plain Exception)
        return None


def nvml_gpus() -> list[dict[str, Any]]:
    """The GPUs NVML sees (empty without a driver); never raises."""
    return nvml_state()["gpus"]


def torch_has_cuda() -> bool:
    import torch

    return torch.backends.cuda.is_built()


def torch_cuda_version() -> str | None:
    """The CUDA version torch was built with (None: a CPU build); importing torch creates no context."""
    import torch

    return torch.version.cuda


def run_gpu() -> tuple[dict[str, Any] | None, str]:
    """The GPU a cuda run here would use, or None and why not (no GPU, CUDA_VISIBLE_DEVICES, torch, driver)."""
    state = nvml_state()
    choice, why = devices.current(state["gpus"])
    if choice is None:
        return None, why if state["gpus"] or not state["error"] else f"no NVIDIA GPU found ({state['error']})"
    if not torch_has_cuda():
        return None, "this torch build has no CUDA"
    level, gap = devices.driver_gap(torch_cuda_version(), choice.get("cuda_driver"))
    if level == "block":
        return None, gap
    return choice, ""


def resolve_device(requested: str) -> str:
    """`auto` picks cuda when a GPU is visible (CUDA_VISIBLE_DEVICES honoured, empty means none)
    and torch has CUDA that this driver can run."""
    if requested == "cpu":
        return "cpu"
    choice, why = run_gpu()
    if requested == "cuda" and choice is None:
        raise TenancyError(f"device 'cuda' requested but {why}; use device: cpu or auto")
    return "cuda" if choice else "cpu"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def host_memory_mib() -> dict[str, float | None]:
    """Host memory: total and available now (MemAvailable), each capped by a cgroup v2 limit."""
    info: dict[str, float] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("MemTotal", "MemAvailable"):
                info[key] = int(value.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    total, available = info.get("MemTotal"), info.get("MemAvailable")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text()) / 2**20
        if limit != "max":
            cap = int(limit) / 2**20
            total = min(total or cap, cap)
            available = min(available or cap, cap - used)
    except (OSError, ValueError):
        pass
    return {"total_mib": total, "available_mib": available}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]  # the repository of an editable install
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


SLURM_VARS = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
              "restart_count": "SLURM_RESTART_COUNT", "partition": "SLURM_JOB_PARTITION",
              "nodelist": "SLURM_JOB_NODELIST", "gpus_on_node": "SLURM_GPUS_ON_NODE"}


def slurm_job() -> dict[str, Any]:
    """The Slurm job this process runs in ({} outside Slurm); `id` as Slurm prints it
    (<array job>_<task> for a job-array task)."""
    found = {k: os.environ[v] for k, v in SLURM_VARS.items() if os.environ.get(v)}
    if not found.get("job_id"):
        return {}
    array = found.get("array_job_id"), found.get("array_task_id")
    return {"id": f"{array[0]}_{array[1]}" if all(array) else found["job_id"], **found}


def collect() -> dict[str, Any]:
    """The environment block of the manifest."""
    import torch
    import transformers

    from tenancy import __version__

    return {
        "host": socket.gethostname(),
        "node": socket.gethostname(),  # the machine that ran it; a Slurm job's node
        "slurm": slurm_job(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "tenancy": __version__,
        "git_commit": git_commit(),
        "host_memory_total_mib": host_memory_mib()["total_mib"],
        "gpus": nvml_gpus(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cuda_device_order": os.environ.get("CUDA_DEVICE_ORDER"),
        "mps_daemons": running_daemons(),
    }
