"""A policy's figures from its ticks and requests (real run or simulation alike).

- efficiency: demand over provisioned capacity, time-averaged: sum of min(rate(t), U(n_t)) over
  sum of U(n_t), where n_t counts every replica paid for (starting, ready, draining) and U is the
  usable capacity (calibrated capacity at the target utilisation); rate(t) is the workload's rate
  function, or the observed arrival rate for a trace. 100%: no usable capacity idle.
- replica_seconds: provisioned replicas integrated over the trace (the cost).
- time_above_slo: share of decision ticks whose sliding-window (slo_window_s, by arrival) p90
  TTFT or p90 E2E is above its SLO; windows without requests are not above.
- slo_attainment: share of requests finished within every SLO; goodput: those per second.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import pandas as pd

from tenancy.serving.config import SLOs


def meets(req: pd.DataFrame, slos: SLOs) -> pd.Series:
    ok = req["status"] == "finished"
    for col, limit in (("ttft_ms", slos.ttft_ms), ("e2e_ms", slos.e2e_ms)):
        if limit is not None:
            ok &= req[col] <= limit
    return ok


def _weights(req: pd.DataFrame) -> np.ndarray:
    """Requests a row stands for: 1 each in a real run, a step's arrivals in the simulation."""
    return req["weight"].to_numpy(float) if "weight" in req else np.ones(len(req))


def window_p90(ticks: pd.DataFrame, req: pd.DataFrame, window_s: float) -> pd.DataFrame:
    """p90 TTFT and E2E of the requests that arrived in (t - window, t], per tick."""
    from tenancy.autoscale.simulate import weighted_percentile

    req = req.sort_values("arrival_s") if len(req) else req
    arr = req["arrival_s"].to_numpy(float) if len(req) else np.array([])
    w = _weights(req)
    ttft = req["ttft_ms"].to_numpy(float) if len(req) else arr
    e2e = req["e2e_ms"].to_numpy(float) if len(req) else arr
    out = []
    for t in ticks["t_s"].to_numpy(float):
        lo, hi = np.searchsorted(arr, t - window_s, "right"), np.searchsorted(arr, t, "right")
        out.append((weighted_percentile(ttft[lo:hi], w[lo:hi], 90), weighted_percentile(e2e[lo:hi], w[lo:hi], 90)))
    return pd.DataFrame(out, columns=["p90_ttft_ms", "p90_e2e_ms"], index=ticks.index)


def above_slo(p90: pd.DataFrame, slos: SLOs) -> pd.Series:
    above = pd.Series(False, index=p90.index)
    for col, limit in (("p90_ttft_ms", slos.ttft_ms), ("p90_e2e_ms", slos.e2e_ms)):
        if limit is not None:
            above |= p90[col] > limit
    return above


def summarize(label: str, ticks: pd.DataFrame, req: pd.DataFrame, capacity: Callable[[int], float],
              rate_fn: Optional[Callable[[float], float]], duration_s: float, slos: SLOs,
              window_s: float) -> dict:
    """One row of summary.csv (ticks after the trace ends count only for latency)."""
    trace = ticks[ticks["t_s"] <= duration_s + 1e-9]
    dt = trace["t_s"].diff().fillna(trace["t_s"].iloc[0] if len(trace) else 0.0)
    cap = trace["provisioned"].map(capacity)
    demand = trace["t_s"].map(rate_fn) if rate_fn else trace["observed_rate"]
    used = np.minimum(demand, cap)
    efficiency = float((used * dt).sum() / (cap * dt).sum()) if (cap * dt).sum() > 0 else math.nan
    p90 = window_p90(trace, req, window_s)
    ok = meets(req, slos) if len(req) else pd.Series(dtype=bool)
    w = _weights(req)
    given = slos.ttft_ms is not None or slos.e2e_ms is not None
    changes = trace["desired"].diff().fillna(0)
    return {
        "policy": label, "efficiency": efficiency, "replica_seconds": float((trace["provisioned"] * dt).sum()),
        "mean_replicas": float((trace["provisioned"] * dt).sum() / dt.sum()) if dt.sum() else math.nan,
        "max_replicas": int(trace["provisioned"].max()) if len(trace) else 0,
        "time_above_slo": float(above_slo(p90, slos).mean()) if given and len(trace) else math.nan,
        "slo_attainment": float((ok * w).sum() / w.sum()) if given and w.sum() else math.nan,
        "goodput": float((ok * w).sum() / duration_s) if given else math.nan,
        "num_requests": float(w.sum()), "completed": float((w * (req["status"] == "finished")).sum()) if len(req) else 0,
        "p50_ttft_ms": _pct(req, "ttft_ms", 50), "p90_ttft_ms": _pct(req, "ttft_ms", 90),
        "p50_e2e_ms": _pct(req, "e2e_ms", 50), "p90_e2e_ms": _pct(req, "e2e_ms", 90),
        "scale_ups": int((changes > 0).sum()), "scale_downs": int((changes < 0).sum()),
    }


def _pct(req: pd.DataFrame, col: str, q: int) -> float:
    from tenancy.autoscale.simulate import weighted_percentile

    keep = req[col].notna().to_numpy() if len(req) else np.array([], bool)
    return weighted_percentile(req[col].to_numpy(float)[keep], _weights(req)[keep], q) if len(req) else math.nan
