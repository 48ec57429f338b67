"""How fast the autoscaling simulator is: every policy on a 24-hour diurnal trace for a fleet of
up to 1,000 replicas (capacity 10 req/s each, cold start 60 s, decisions every 10 s).

    python tools/bench_autoscale_sim.py
"""
from __future__ import annotations

import math
import time

from tenancy.autoscale.capacity import Capacity
from tenancy.autoscale.config import Kv, Oracle, Predictive, Reactive, Static
from tenancy.autoscale.metrics import summarize
from tenancy.autoscale.policies.base import Context
from tenancy.autoscale.simulate import ServiceModel, simulate
from tenancy.serving.config import SLOs

DAY = 86400.0


def main() -> None:
    cap = Capacity((10.0,), 1, 1000, 0.8)
    rate = lambda t: 4000 * (1 + 0.75 * math.sin(2 * math.pi * t / DAY))  # noqa: E731 - peak 7000 req/s
    ctx = Context(cap, 60.0, 10.0, rate, DAY, DAY)
    model = ServiceModel(cap, 0.2, 2.0, 60.0)
    print("| policy | efficiency | mean replicas | time above SLO | seconds |")
    print("|---|---|---|---|---|")
    total = time.perf_counter()
    for p in (Static(replicas="peak"), Static(replicas="mean"), Reactive(target_ongoing_requests=16),
              Kv(target_kv_utilization=0.8), Predictive(min_history_s=3600), Oracle()):
        t0 = time.perf_counter()
        ticks, reqs = simulate(p, ctx, model, DAY, 10.0)
        s = summarize(p.label, ticks, reqs, cap.usable, rate, DAY, SLOs(e2e_ms=5000), 300.0)
        print(f"| {p.label} | {s['efficiency']:.1%} | {s['mean_replicas']:.0f} | {s['time_above_slo']:.1%} | "
              f"{time.perf_counter() - t0:.2f} |")
    print(f"\nall six policies: {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
