"""Demand and capacity: the workload's rate function, and replicas needed for a rate.

Capacity is measured per replica count (calibration.py), not assumed linear: replicas that share
one GPU (or a few CPU cores) compete, so the n-th replica may add little. Beyond the measured
counts the last measured step is extrapolated (one measured count: linear, as separate GPUs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

from tenancy.serving.config import WorkloadConfig

RateFn = Callable[[float], float]


def rate_function(w: WorkloadConfig) -> Optional[RateFn]:
    """Expected arrivals per second at time t, when the workload has one (not a trace)."""
    if w.trace is not None:
        return None
    if w.arrival in ("poisson", "gamma"):
        return lambda t: w.rate
    if w.arrival == "sinusoidal":
        return lambda t: w.rate * (1 + w.amplitude * math.sin(2 * math.pi * t / w.period_s))
    return None


def duration_s(w: WorkloadConfig) -> Optional[float]:
    """How long the arrivals last, when known before generating them."""
    if w.duration_s is not None:
        return w.duration_s
    return w.num_requests / w.rate if w.trace is None and w.arrival in ("poisson", "gamma", "sinusoidal") else None


@dataclass(frozen=True)
class Capacity:
    """Requests per second that n replicas sustain; `rps[i]` is for i+1 replicas."""

    rps: tuple[float, ...]
    min_replicas: int = 1
    max_replicas: int = 1
    target_utilization: float = 1.0

    def __call__(self, n: int) -> float:
        if n <= 0:
            return 0.0
        k = len(self.rps)
        if n <= k:
            return self.rps[n - 1]
        step = self.rps[-1] if k == 1 else max(0.0, self.rps[-1] - self.rps[-2])
        return self.rps[-1] + (n - k) * step

    def usable(self, n: int) -> float:
        """The load n replicas are meant to carry: capacity at the target utilisation. Efficiency
        is demand over this, so a fleet sized exactly to the target reads 100%."""
        return self(n) * self.target_utilization

    def replicas_for(self, rate: float) -> int:
        """The fewest replicas (within the bounds) whose capacity at the target utilisation covers `rate`."""
        for n in range(self.min_replicas, self.max_replicas + 1):
            if self.usable(n) >= rate:
                return n
        return self.max_replicas


def sample(fn: RateFn, start: float, end: float, step: float = 0.1, most: int = 50) -> list[float]:
    """fn on a grid over [start, end] (both ends included), at most `most` + 1 points."""
    n = min(most, max(1, int(math.ceil((end - start) / step))))
    return [fn(start + (end - start) * i / n) for i in range(n + 1)]
