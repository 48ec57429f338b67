"""The policies on a fluid model of the fleet: a day of a thousand replicas in seconds.

One step per decision interval. Demand arrives at the rate function's mean over the step (or a
trace's arrivals); n ready replicas serve up to C(n) requests/s (calibrated); what they cannot
serve queues, FIFO. A request that arrives while Q requests wait is answered after the queue
ahead drains: TTFT = ttft0 + Q/C, E2E = e2e0 + Q/C, where ttft0 and e2e0 are the latencies at
low load (measured). A replica started now is ready one cold start later; a removed one still
costs one e2e0 while it drains. Policies see what they see on the real fleet: ongoing requests
(in service by Little's law, plus the queue), arrivals, KV use (ongoing over the fleet's slots).
Not modelled: the random queueing of Poisson arrivals below saturation, so latency at high
utilisation is optimistic; compare with a real run (README) before trusting a tail figure.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pandas as pd

from tenancy.autoscale import policies
from tenancy.autoscale.capacity import Capacity
from tenancy.autoscale.policies.base import Context, Observation


@dataclass(frozen=True)
class ServiceModel:
    capacity: Capacity
    ttft0_s: float
    e2e0_s: float
    cold_start_s: float


def simulate(policy_cfg, ctx: Context, model: ServiceModel, duration_s: float, interval_s: float,
             arrivals: Optional[Callable[[float, float], float]] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ticks (as the real run's replicas table) and one request row per step (weight = arrivals).
    `arrivals(t0, t1)`: requests arriving in [t0, t1); default: the rate function integrated."""
    cap = model.capacity
    if arrivals is None:
        fn = ctx.rate_fn
        arrivals = lambda a, b: (b - a) * (fn(a) + 4 * fn((a + b) / 2) + fn(b)) / 6  # noqa: E731 (Simpson)
    policy = policies.make(policy_cfg, ctx)
    ready = min(max(policy.decide(Observation(0.0, 0.0, 0, 0, 0, 0, 0.0)), cap.min_replicas), cap.max_replicas)
    starting: deque[float] = deque()  # ready times
    draining: deque[float] = deque()  # release times
    queue, slots = 0.0, max(cap(1) * model.e2e0_s, 1e-9)
    ticks, reqs = [], []
    steps = int(math.ceil(duration_s / interval_s - 1e-9))
    for k in range(1, steps + 1):
        t0, t = (k - 1) * interval_s, min(k * interval_s, duration_s)
        dt = t - t0
        while starting and starting[0] <= t0 + 1e-12:
            starting.popleft()
            ready += 1
        while draining and draining[0] <= t0 + 1e-12:
            draining.popleft()
        a = arrivals(t0, t)
        c = cap(ready)
        q_start = queue
        served = min(queue + a, c * dt)
        queue = queue + a - served
        wait = (q_start + queue) / 2 / c if c > 0 else (math.inf if a else 0.0)
        in_service = min(a / dt, c) * model.e2e0_s if dt > 0 else 0.0
        ongoing = in_service + queue
        obs = Observation(t, dt, ready, ready + len(starting), ongoing, a,
                          min(1.0, in_service / (slots * ready)) if ready else 0.0)
        desired = min(max(int(policy.decide(obs)), cap.min_replicas), cap.max_replicas)
        while ready + len(starting) < desired:
            starting.append(t + model.cold_start_s)
        while ready + len(starting) > desired:
            if starting:
                starting.pop()
            else:
                ready -= 1
                draining.append(t + model.e2e0_s)
        ticks.append(dict(t_s=t, provisioned=ready + len(starting) + len(draining), ready=obs.ready,
                          starting=len(starting), draining=len(draining), desired=desired, in_flight=in_service,
                          queue=queue, arrivals=a, observed_rate=a / dt if dt > 0 else 0.0,
                          kv_utilization=obs.kv_utilization, host_rss_mb=math.nan))
        reqs.append(dict(request_id=k - 1, replica=-1, status="finished", arrival_s=(t0 + t) / 2,
                         ttft_ms=(model.ttft0_s + wait) * 1e3, e2e_ms=(model.e2e0_s + wait) * 1e3, weight=a))
    return pd.DataFrame(ticks), pd.DataFrame(reqs)


def weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value below which at least q% of the weight lies (inverted CDF)."""
    if not len(values) or weights.sum() <= 0:
        return math.nan
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, q / 100 * cum[-1])])
