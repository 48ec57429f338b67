"""What `tenancy run` and `tenancy sweep` check before anything starts (`tenancy doctor` shows the
same): the run must fit the host's memory and the GPU's, and the card's compute mode must let its
processes share it; an MPS daemon that is not ours is worth a warning."""
from __future__ import annotations

from typing import Any

from tenancy.core.errors import TenancyError
from tenancy.gpu import devices, environment
from tenancy.harness import estimate
from tenancy.harness.scenario import Scenario

GIB = 1024.0


def compute_mode_refusal(scenario: Scenario, card: dict[str, Any] | None) -> str:
    """Why the card's compute mode would fail this run part-way ("" when it would not): PROHIBITED
    allows no CUDA context, EXCLUSIVE_PROCESS one process (the MPS server counts as one; a
    time-sliced launch fails only when its second tenant starts)."""
    if scenario.device != "cuda" or card is None:
        return ""
    mode, name = card.get("compute_mode"), f"GPU {card.get('index')} ({card.get('uuid')})"
    fix = f"nvidia-smi -i {card.get('uuid')} -c DEFAULT (root)"
    if mode == "prohibited":
        return f"{name} is in compute mode PROHIBITED: no process may use it; set it back with {fix}"
    processes = len(scenario.instances())
    if mode in ("exclusive_process", "exclusive_thread") and scenario.mode == "timeslice" and processes > 1:
        return (f"{name} is in compute mode {mode.upper()}: one CUDA process at a time, so the "
                f"time-sliced launch of {processes} processes would fail when its second tenant starts; "
                f"use sharing: mps or streams, or {fix}")
    return ""


def capacity_refusal(scenario: Scenario, memory: dict[str, float], card: dict[str, Any] | None,
                     host_available_mib: float | None) -> str:
    """Why the run cannot fit this machine ("" when it can), with the figures."""
    if scenario.device == "cuda" and card and card.get("memory_total_mib") \
            and memory["peak_mib"] > card["memory_total_mib"]:
        return (f"too big: needs ~{memory['peak_mib'] / GIB:.1f} GiB, "
                f"the GPU has {card['memory_total_mib'] / GIB:.1f} GiB")
    if host_available_mib is not None and memory["host_peak_mib"] > host_available_mib:
        what = "to load the weights" if scenario.device == "cuda" else "to run the tenants"
        return (f"too big for host memory: needs ~{memory['host_peak_mib'] / GIB:.1f} GiB {what}, "
                f"{host_available_mib / GIB:.1f} GiB available")
    return ""


def refusal(scenario: Scenario, gpus: list[dict[str, Any]], host_available_mib: float | None,
            params: dict | None = None) -> tuple[str, dict[str, float]]:
    """(why this resolved scenario cannot run here or "", its memory estimate)."""
    memory = estimate.run_mib(scenario, params)
    card = devices.current(gpus)[0]
    return (capacity_refusal(scenario, memory, card, host_available_mib)
            or compute_mode_refusal(scenario, card)), memory


def check(scenario: Scenario) -> None:
    """`tenancy run`: refuse with one line, before anything starts."""
    why, _ = refusal(scenario, environment.nvml_gpus(), environment.host_memory_mib()["available_mib"])
    if why:
        raise TenancyError(f"{scenario.name}: {why}")


def mps_warnings(daemons: list[dict[str, Any]]) -> list[str]:
    """A warning for MPS daemons and servers that are not ours."""
    if not daemons:
        return []
    listed = ", ".join(f"{d['program']} pid {d['pid'] or '?'} (pipe dir {d['pipe_dir'] or 'unreadable'})" for d in daemons[:4])
    return [f"MPS processes not started by this run: {listed}; our tenants are kept off them (outside our "
            "MPS sessions they see an empty private CUDA_MPS_PIPE_DIRECTORY), but their clients share the GPU"]
