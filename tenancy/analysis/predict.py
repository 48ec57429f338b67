"""Predicted slowdowns from solo demands: the roofline's first answer to "what will co-location cost?".

Why: a measured slowdown the roofline predicts is explained by shared compute or bandwidth; one it
does not predict points elsewhere (scheduling, caches, the host). The model is deliberately simple:

- A tenant alone demands a share of each resource while it runs: compute = its step's FLOPs per
  second over the peak FLOP/s, memory = its bytes per second over the peak bytes/s, and `slots`,
  the share of execution contexts it holds while busy: on a CPU its threads over the cores (a
  running thread holds a core); on a GPU under time-slicing the whole GPU (one context runs at a
  time, and a closed-loop tenant that synchronises every iteration always has work); under MPS
  or streams no slot is held (kernels of all tenants run side by side).
- Sharing: a resource whose summed demand exceeds 1 is shared in proportion to demand, so every
  tenant using it slows by that sum; a tenant's slowdown is the largest over the resources it
  uses, and never below 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenancy.analysis import roofline

RESOURCES = ("compute", "memory", "slots")


@dataclass(frozen=True)
class Demand:
    """Shares of the device one tenant uses alone (each in [0, 1] for a real measurement)."""

    compute: float
    memory: float
    slots: float

    def get(self, resource: str) -> float:
        return getattr(self, resource)


def slots_held(device: str, sharing: str, threads: int | None, cpu_count: int | None) -> float:
    """The share of execution contexts a busy tenant holds (see the module docstring)."""
    if device == "cpu":
        return min(1.0, (threads or 1) / max(1, cpu_count or 1))
    return 1.0 if sharing == "timeslice" else 0.0


def demand(work: dict[str, Any], solo_ms: float, peak: dict[str, Any], slots: float) -> Demand | None:
    """A tenant's demand alone from its step's roofline cost at its measured solo mean latency
    (None for a serving tenant or without peaks)."""
    f = roofline.tenant_floor(work, peak) if peak else None
    if f is None or not solo_ms or solo_ms <= 0:
        return None
    secs = solo_ms / 1000.0
    return Demand(compute=f.flops / secs / peak["flops_per_s"], memory=f.bytes / secs / peak["bytes_per_s"],
                  slots=slots)


def slowdowns(demands: list[Demand]) -> list[float]:
    """Each tenant's predicted slowdown when all of `demands` share the device."""
    totals = {r: sum(d.get(r) for d in demands) for r in RESOURCES}
    return [max([1.0] + [totals[r] for r in RESOURCES if d.get(r) > 0]) for d in demands]


def bottleneck(demands: list[Demand]) -> str:
    """The resource with the largest summed demand: what the prediction says they fight over."""
    totals = {r: sum(d.get(r) for d in demands) for r in RESOURCES}
    top = max(totals, key=totals.get)
    return top if totals[top] > 1.0 else "none"
