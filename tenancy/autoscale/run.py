"""One policy on the real fleet: the seeded trace in real time, a decision every interval.

The fleet the policy wants at t=0 is started and warm before the trace clock starts (every
policy begins from its own steady state); from then on every cold start is on the clock.
After the last arrival the run continues until every request has finished, then the fleet is
drained. Ticks (one row per decision) and requests (one row each, with the serving replica)
come back as tables; metrics.py turns them into the summary row.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import pandas as pd

from tenancy.autoscale import policies
from tenancy.autoscale.fleet import Fleet
from tenancy.autoscale.policies.base import Context, Observation
from tenancy.autoscale.replica import ReplicaSpec
from tenancy.serving.workload import RequestSpec

STARTUP_TIMEOUT_S = 600.0


@dataclass
class PolicyRun:
    label: str
    ticks: pd.DataFrame
    requests: pd.DataFrame
    replicas: pd.DataFrame  # one row per replica: cold start split, peak RSS, served
    events: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    status: str = "complete"


def host_rss_mb(pids: list[int]) -> float:
    """Resident memory now of the given processes (VmRSS), summed."""
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run_policy(policy_cfg, ctx: Context, specs: list[RequestSpec], make_spec: Callable[[int], ReplicaSpec],
               router: str, interval_s: float, min_r: int, max_r: int) -> PolicyRun:
    policy = policies.make(policy_cfg, ctx)
    t0 = [time.perf_counter_ns()]  # moved to the trace start once the first fleet is ready
    clock = lambda: (time.perf_counter_ns() - t0[0]) / 1e9  # noqa: E731
    fleet = Fleet(make_spec, router, clock)
    rows, ticks = [], []
    clamp = lambda n: min(max(int(n), min_r), max_r)  # noqa: E731
    try:
        fleet.scale_to(clamp(policy.decide(Observation(0.0, 0.0, 0, 0, 0, 0, 0.0))))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while fleet.count("starting") and time.monotonic() < deadline and not fleet.failures:
            fleet.poll(0.1)
        shift = clock()
        t0[0] += round(shift * 1e9)
        for e in fleet.events:  # the initial fleet's start: negative times, before the trace
            e["t"] -= shift
        for r in fleet.replicas:
            r.spawned_s -= shift
            if "ready_t" in r.cold:
                r.cold["ready_t"] -= shift
        rows, ticks = _loop(fleet, policy, specs, t0[0], clock, interval_s, clamp)
    finally:
        fleet.close()
    return _tables(policy_cfg.label, fleet, rows, ticks, len(specs), t0[0])


def _loop(fleet: Fleet, policy, specs, t0_ns: int, clock, interval_s: float, clamp):
    pending = list(specs)
    i, rows, ticks, arrivals, prev, rss_peak = 0, [], [], 0, 0.0, 0.0
    next_tick = interval_s
    while i < len(pending) or fleet.ongoing():
        now = clock()
        while i < len(pending) and pending[i].arrival_s <= now:
            s = pending[i]
            fleet.submit((s.id, s.prompt, s.output_len, t0_ns + round(s.arrival_s * 1e9)))
            i, arrivals = i + 1, arrivals + 1
        nxt = min(pending[i].arrival_s if i < len(pending) else math.inf, next_tick)
        rows += fleet.poll(max(0.0, min(nxt - clock(), 0.05)))
        if fleet.failures and not fleet.count("starting", "ready", "draining"):
            break  # nothing left that could serve: the run failed, what finished is kept
        if clock() >= next_tick:
            t = next_tick
            obs = Observation(t, t - prev, fleet.count("ready"), fleet.count("starting", "ready"),
                              fleet.ongoing(), arrivals, fleet.kv_utilization())
            desired = clamp(policy.decide(obs))
            fleet.scale_to(desired)
            pids = [os.getpid()] + [r.cold.get("pid") or r.proc.pid for r in fleet.replicas
                                    if r.state not in ("stopped", "failed")]
            rss = host_rss_mb(pids)
            rss_peak = max(rss_peak, rss)
            ticks.append(dict(t_s=t, provisioned=fleet.count("starting", "ready", "draining", "stopping"),
                              ready=obs.ready, starting=fleet.count("starting"),
                              draining=fleet.count("draining", "stopping"), desired=desired,
                              in_flight=obs.ongoing - len(fleet.backlog), queue=len(fleet.backlog),
                              arrivals=arrivals, observed_rate=arrivals / (t - prev),
                              kv_utilization=obs.kv_utilization, host_rss_mb=rss))
            prev, arrivals, next_tick = t, 0, next_tick + interval_s
    return rows, ticks


def _tables(label: str, fleet: Fleet, rows: list[dict], ticks: list[dict], n_specs: int, t0_ns: int) -> PolicyRun:
    """Request times in seconds since the trace clock started, latencies in ms."""
    req = pd.DataFrame(rows, columns=["request_id", "replica", "status", "error", "input_len", "output_len",
                                      "arrival_ns", "first_token_ns", "finish_ns"])
    sec = lambda c: (req[c].astype(float) - t0_ns) / 1e9  # noqa: E731
    req = req.assign(arrival_s=sec("arrival_ns"), first_token_s=sec("first_token_ns"), finish_s=sec("finish_ns"))
    req = req.drop(columns=["arrival_ns", "first_token_ns", "finish_ns"]).assign(
        ttft_ms=lambda d: (d.first_token_s - d.arrival_s) * 1e3, e2e_ms=lambda d: (d.finish_s - d.arrival_s) * 1e3)
    req = req.sort_values("request_id", ignore_index=True)
    reps = pd.DataFrame([{"replica": r.id, "final_state": r.state, "served": r.served, "peak_rss_mb": r.peak_rss_mb,
                          "spawned_s": r.spawned_s, "message": r.message,
                          **{k: v for k, v in r.cold.items() if k != "pid"}} for r in fleet.replicas])
    ok = len(req) == n_specs and (req["status"] == "finished").all() and not fleet.failures
    return PolicyRun(label, pd.DataFrame(ticks), req, reps, fleet.events, fleet.failures,
                     "complete" if ok else "failed")
