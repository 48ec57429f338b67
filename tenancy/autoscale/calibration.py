"""Capacity per replica count, measured on this device, and the service model of the simulator.

For n = 1..K replicas (started one by one, each cold start recorded), a closed loop keeps
`concurrency_per_replica * n` requests of the scenario's length mix in flight for `seconds`;
capacity(n) = requests finished per second in the second half of that time (the first half
fills the batches). Before that, one request at a time on one replica gives the latencies at low
load (ttft0, e2e0). Replicas that share a device do not add capacity linearly; this table says
by how much they do here.
"""
from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd

from tenancy.autoscale.fleet import Fleet
from tenancy.serving.workload import RequestSpec


def _closed_loop(fleet: Fleet, specs, ids, concurrency: int, seconds: float) -> list[dict]:
    """Keep `concurrency` requests in flight for `seconds`; rows finished, with their send time."""
    rows, sent = [], {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        while fleet.ongoing() < concurrency:
            s = next(specs)
            rid = next(ids)
            sent[rid] = time.monotonic()
            fleet.submit((rid, s.prompt, s.output_len, time.perf_counter_ns()))
        for r in fleet.poll(0.01):
            r["done_at"] = time.monotonic()
            rows.append(r)
    while fleet.ongoing():  # let the stragglers finish before the next count
        fleet.poll(0.05)
    return [r for r in rows if r["done_at"] <= end]


def calibrate(fleet: Fleet, specs: list[RequestSpec], max_replicas: int, seconds: float,
              per_replica: int) -> tuple[pd.DataFrame, dict]:
    """The capacity table (one row per replica count) and the service model's latencies."""
    pool, ids = itertools.cycle(specs), itertools.count()
    table, low = [], {}
    for n in range(1, max_replicas + 1):
        fleet.scale_to(n)
        while fleet.count("starting"):
            fleet.poll(0.1)
            if fleet.failures:
                raise RuntimeError(f"calibration: {fleet.failures[0]}")
        if n == 1:
            rows = _closed_loop(fleet, pool, ids, 1, min(seconds, 2.0))
            low = {"ttft0_s": float(np.median([(r["first_token_ns"] - r["arrival_ns"]) / 1e9 for r in rows])),
                   "e2e0_s": float(np.median([(r["finish_ns"] - r["arrival_ns"]) / 1e9 for r in rows]))}
        start = time.monotonic()
        rows = _closed_loop(fleet, pool, ids, per_replica * n, seconds)
        half = start + seconds / 2
        late = [r for r in rows if r["done_at"] > half]
        table.append({"replicas": n, "measured_rps": len(late) / (seconds / 2), "requests": len(rows),
                      "concurrency": per_replica * n})
    cold = [r.cold for r in fleet.replicas if r.cold]
    low["cold_start_s"] = float(np.mean([c["cold_start_s"] for c in cold])) if cold else float("nan")
    # capacity never falls with more replicas in the table the policies use: a fleet can idle one
    cap = pd.DataFrame(table)
    cap["capacity_rps"] = cap["measured_rps"].cummax()
    return cap, low
