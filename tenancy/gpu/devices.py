"""Which GPU a run uses, and how every process we start names it.

CUDA numbers devices fastest-first unless CUDA_DEVICE_ORDER=PCI_BUS_ID; NVML and nvidia-smi number
them by PCI bus; an MPS server renumbers the devices its control daemon sees. An index therefore
means different cards to different programs, a UUID means one. The run's GPU is the first entry of
CUDA_VISIBLE_DEVICES (an index read in PCI bus order, or a UUID or its prefix), resolved through
NVML to its UUID; every process we start (tenants, the MPS daemon, the monitor, nvidia-smi) gets
that UUID and CUDA_DEVICE_ORDER=PCI_BUS_ID.
"""
from __future__ import annotations

import os
from typing import Any

ORDER = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
HIDDEN = ("", "-1", "none", "NoDevFiles")  # values that leave CUDA no device


def choose(gpus: list[dict[str, Any]], visible: str | None) -> tuple[dict[str, Any] | None, str]:
    """The GPU that CUDA_VISIBLE_DEVICES=`visible` selects among NVML's `gpus`, or None and why."""
    if not gpus:
        return None, "no NVIDIA GPU found (NVML sees none)"
    if visible is None:
        return gpus[0], ""
    first = visible.split(",")[0].strip()
    if first in HIDDEN:
        return None, f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    if first.isdigit():
        index = int(first)
        if index < len(gpus):
            return gpus[index], ""
        return None, (f"CUDA_VISIBLE_DEVICES={visible!r} names GPU {index}, but NVML sees {len(gpus)} "
                      f"(indices 0-{len(gpus) - 1} in PCI bus order)")
    if first.startswith("MIG-"):
        return None, f"CUDA_VISIBLE_DEVICES={visible!r} names a MIG instance; tenancy runs on whole GPUs"
    found = [g for g in gpus if str(g.get("uuid", "")).startswith(first)]
    if len(found) == 1:
        return found[0], ""
    why = "matches no GPU" if not found else f"matches {len(found)} GPUs"
    return None, f"CUDA_VISIBLE_DEVICES={visible!r} {why} (UUIDs: {', '.join(str(g.get('uuid')) for g in gpus)})"


def current(gpus: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """`choose` with this process's CUDA_VISIBLE_DEVICES."""
    return choose(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def process_env(gpu: dict[str, Any] | None) -> dict[str, str]:
    """What every process we start sees: the GPU by UUID (when there is one), devices in PCI order."""
    return {**ORDER, **({"CUDA_VISIBLE_DEVICES": gpu["uuid"]} if gpu else {})}


def driver_gap(torch_cuda: str | None, driver_cuda: str | None) -> tuple[str, str]:
    """("block" | "warn" | "", why) for torch built with CUDA `torch_cuda` on a driver that supports
    CUDA `driver_cuda` (major.minor). A newer major than the driver's cannot run; a newer minor runs
    under minor version compatibility (CUDA 11+) with a limited feature set (no newer PTX JIT)."""
    if not torch_cuda or not driver_cuda:
        return "", ""
    t = tuple(int(x) for x in torch_cuda.split(".")[:2])
    d = tuple(int(x) for x in driver_cuda.split(".")[:2])
    if t[0] > d[0]:
        return "block", (f"the driver is too old for this torch: torch uses CUDA {torch_cuda}, "
                         f"the driver supports CUDA {driver_cuda}")
    if t > d:
        return "warn", (f"torch uses CUDA {torch_cuda}, the driver supports CUDA {driver_cuda}: runs under "
                        "minor version compatibility (limited feature set)")
    return "", ""
