"""What a policy sees each decision, what it knows from the start, and the delay rule two share."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

from tenancy.autoscale.capacity import Capacity, RateFn


@dataclass(frozen=True)
class Observation:
    """The fleet at one decision: what a production autoscaler can read."""

    t_s: float  # since the trace started
    dt_s: float  # since the previous decision
    ready: int
    provisioned: int  # ready + starting (draining replicas are on their way out)
    ongoing: int  # requests in flight at replicas + waiting at the router
    arrivals: int  # requests that arrived since the previous decision
    kv_utilization: float  # mean over ready replicas, 0..1


@dataclass(frozen=True)
class Context:
    """Known before the trace starts."""

    capacity: Capacity
    cold_start_s: float
    interval_s: float
    rate_fn: Optional[RateFn] = None  # the oracle's and static sizing's knowledge
    duration_s: Optional[float] = None
    season_s: Optional[float] = None


class Delayed:
    """Ray Serve's delays: a wish to scale up (down) is acted on only after it has held for
    `up_s` (`down_s`) of consecutive decisions; a change of direction restarts the count."""

    def __init__(self, up_s: float, down_s: float) -> None:
        self.up_s, self.down_s = up_s, down_s
        self.held_s, self.direction = 0.0, 0

    def __call__(self, want: int, current: int, dt_s: float) -> int:
        direction = (want > current) - (want < current)
        if direction == 0:
            self.held_s, self.direction = 0.0, 0
            return current
        self.held_s = self.held_s + dt_s if direction == self.direction else dt_s
        self.direction = direction
        if self.held_s >= (self.up_s if direction > 0 else self.down_s):
            self.held_s, self.direction = 0.0, 0
            return want
        return current


class Window:
    """Values of the last `span_s` seconds, and their mean."""

    def __init__(self, span_s: float) -> None:
        self.span_s, self.total = span_s, 0.0
        self.items: deque[tuple[float, float]] = deque()

    def add(self, t: float, value: float) -> None:
        self.items.append((t, value))
        self.total += value
        while self.items[0][0] <= t - self.span_s:
            self.total -= self.items.popleft()[1]

    def mean(self) -> float:
        return self.total / len(self.items) if self.items else 0.0
