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

from tenancy.errors import TenancyError


def nvml_gpus() -> list[dict[str, Any]]:
    """The GPUs NVML sees (empty without a driver); never raises."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        driver = pynvml.nvmlSystemGetDriverVersion()
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            info = {
                "index": i,
                "name": pynvml.nvmlDeviceGetName(h),
                "uuid": pynvml.nvmlDeviceGetUUID(h),
                "driver": driver,
                "cuda_driver": f"{cuda // 1000}.{cuda % 1000 // 10}",
                "memory_total_mib": pynvml.nvmlDeviceGetMemoryInfo(h).total // 2**20,
            }
            for key, fn in [
                ("compute_mode", pynvml.nvmlDeviceGetComputeMode),
                ("persistence_mode", pynvml.nvmlDeviceGetPersistenceMode),
                ("sm_clock_max_mhz", lambda h: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("power_limit_w", lambda h: pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000),
            ]:
                try:
                    info[key] = fn(h)
                except pynvml.NVMLError:
                    info[key] = None
            gpus.append(info)
        return gpus
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def torch_has_cuda() -> bool:
    import torch

    return torch.backends.cuda.is_built()


def resolve_device(requested: str) -> str:
    """`auto` picks cuda when a GPU and a CUDA build of torch are both present."""
    usable = bool(nvml_gpus()) and torch_has_cuda()
    if requested == "cuda" and not usable:
        why = "no NVIDIA GPU found" if not nvml_gpus() else "this torch build has no CUDA"
        raise TenancyError(f"device 'cuda' requested but {why}; use device: cpu or auto")
    if requested == "auto":
        return "cuda" if usable else "cpu"
    return requested


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
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


def collect() -> dict[str, Any]:
    """The environment block of the manifest."""
    import torch
    import transformers

    from tenancy import __version__

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "tenancy": __version__,
        "git_commit": git_commit(),
        "gpus": nvml_gpus(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
