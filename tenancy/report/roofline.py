"""The report's roofline: every tenant on its device's roofline alone and shared, and the predicted
slowdowns (tenancy.analysis.predict) against the measured ones.

Peaks come from each run's manifest. Runs measured before peaks were recorded get peaks measured
now, on this machine, when they ran on a CPU (a GPU run without peaks is left out): the table says
which (`peaks`), and the caption says so.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tenancy.analysis import floors, predict, roofline
from tenancy.gpu import peaks
from tenancy.report.stats import num

FROM_RUN, AT_REPORT = "run", "measured at report time on this machine"


def run_peaks(run: dict[str, Any], cache: peaks.Cache) -> tuple[dict[str, Any] | None, str]:
    """({dtype: peaks}, source) of a run; (None, why) when there are none."""
    m = run["manifest"]
    dtypes = sorted({t.get("dtype") or "float32" for t in m["scenario"]["tenants"]})
    got = m.get("peaks")
    if isinstance(got, dict) and "error" not in got and all(floors.peak_for(got, dt) for dt in dtypes):
        return got, FROM_RUN
    if run["device"] != "cpu":
        return None, "no peaks in the run and it ran on a GPU"
    got = cache.get("cpu", dtypes)
    if "error" in got:
        return None, got["error"]
    load = max(p.get("load_avg_1m", 0.0) for p in got.values())
    return got, f"{AT_REPORT} (1-minute load average {load:.1f}: a busy host measures low peaks)"


def works(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tenant name -> its work (the fields the roofline needs) from the manifest."""
    return {t["name"]: {k: t.get(k) for k in (*floors.WORK, "copies", "threads")} | {"size": t.get("size") or "full"}
            for t in run["manifest"]["scenario"]["tenants"]}


def roofline_table(runs: list[dict[str, Any]], cache: peaks.Cache) -> pd.DataFrame:
    """One row per (run, phase, tenant copy): the step's FLOPs and bytes, its intensity, achieved
    FLOP/s, floor, bound, MFU and MBU on the run's peaks."""
    rows = []
    for r in runs:
        if r["summary"].empty:
            continue
        pk, source = run_peaks(r, cache)
        if pk is None:
            continue
        w = works(r)
        for s in r["summary"].to_dict("records"):
            work = w.get(s["tenant"])
            peak = floors.peak_for(pk, work["dtype"]) if work else None
            f = roofline.tenant_floor(work, peak) if peak else None
            mean = num(s.get("mean_ms"))
            if f is None or not np.isfinite(mean):
                continue
            v = floors.row_values(work, mean, peak)
            rows.append({"run": r["id"], "sharing": r["sharing"], "phase": s["phase"], "tenant": s["tenant"],
                         "copy": int(s["copy"]), "model": work["model"], "task": work["task"],
                         "gflop": f.flops / 1e9, "mbyte": f.bytes / 1e6, "intensity": f.flops / f.bytes,
                         "achieved_gflops": f.flops / (mean / 1e3) / 1e9, "mean_ms": mean, **v,
                         "peak_gflops": peak["flops_per_s"] / 1e9, "peak_gbps": peak["bytes_per_s"] / 1e9,
                         "device": peak.get("name") or r["device"], "peaks": source})
    return pd.DataFrame(rows)


def tenant_demand(run: dict[str, Any], mode: str, work: dict[str, Any] | None, solo_ms: float,
                  pk: dict[str, Any]) -> predict.Demand | None:
    """What a tenant of `run` demands alone under sharing `mode` (None without its work): the one
    recipe the report's predictions and `tenancy advise` share."""
    if not work:
        return None
    env = run["manifest"].get("environment") or {}
    slots = predict.slots_held(run["device"], mode, work.get("threads") or run["threads_per_tenant"],
                               env.get("cpu_count"))
    return predict.demand(work, solo_ms, floors.peak_for(pk, work.get("dtype")), slots)


def _solo_ms(run: dict[str, Any], config: str) -> float:
    s = run["summary"]
    solo = s[(s["phase"] == "solo") & (s["config"] == config)] if not s.empty else s
    return float(solo["mean_ms"].mean()) if len(solo) else math.nan


def prediction_table(runs: list[dict[str, Any]], slowdowns: pd.DataFrame, cache: peaks.Cache) -> pd.DataFrame:
    """One row per shared tenant copy of every tenant set (A/A controls left out): the slowdown the
    solo demands predict next to its neighbours, the measured one with its interval, the error
    (predicted / measured - 1), and whether the prediction falls inside the measured interval."""
    if slowdowns.empty:
        return pd.DataFrame()
    by_id = {r["id"]: r for r in runs}
    rows = []
    for _, g in slowdowns[slowdowns["kind"] != "control"].groupby("cell", sort=False):
        run = by_id.get(str(g["runs"].iloc[0]).split(", ")[0])
        if run is None:
            continue
        pk, source = run_peaks(run, cache)
        if pk is None:
            continue
        w = works(run)
        dem = [tenant_demand(run, run["sharing"], w.get(s.tenant), _solo_ms(run, s.config), pk)
               for s in g.itertuples()]
        if any(d is None for d in dem):
            continue
        pred, neck = predict.slowdowns(dem), predict.bottleneck(dem)
        for s, d, p in zip(g.itertuples(), dem, pred):
            inside = bool(np.isfinite(s.lo) and s.lo <= p <= s.hi) if np.isfinite(s.hi) else pd.NA
            rows.append({"tenant set": s.label, "sharing": s.sharing, "kind": s.kind, "tenant": f"{s.tenant}#{s.copy}",
                         "model": s.model, "compute": d.compute, "memory": d.memory, "slots": d.slots,
                         "bottleneck": neck, "predicted": p, "measured": s.slowdown, "lo": s.lo, "hi": s.hi,
                         "error": p / s.slowdown - 1 if s.slowdown else math.nan, "explained": inside,
                         "basis": s.basis, "peaks": source})
    return pd.DataFrame(rows)
