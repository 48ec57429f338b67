"""The report's numbers: tidy tables over runs, taken from the runs' own results.

Nothing here re-derives a slowdown or an interval from samples: a run's per-tenant slowdowns,
STP, ANTT and fairness with their intervals and verdicts are the ones its analysis wrote
(summary.csv, metrics.json). The report adds one thing: run directories of the same work under the
same sharing mode (a `cell`) are repeats of one measurement, so their per-repeat values are
pooled and the interval is the one across all of them (`tenancy.analysis.stats.interval`).
Old run directories (schema 1, no per-repeat results) count as one repeat each and have no
interval of their own. Every row says what its interval covers (`basis`).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tenancy.analysis import stats as tstats

METRICS = ("stp", "antt", "fairness", "min_max_fairness")
MAX_PLOT_SAMPLES = 3000  # per box in the distribution figures
BASIS_TEXT = {
    "repeats": "95% Student-t interval across the run's repeats (slowdowns on the log scale)",
    "within-run": "95% moving-block bootstrap within each launch (launch-to-launch variation not included)",
    "pooled": "95% Student-t interval across the repeats of all run directories of this work (slowdowns on the log scale)",
    "none": "no interval (old run directory without per-repeat results)",
}


def num(x: Any) -> float:
    """A float from JSON/CSV (None, '' and junk become NaN)."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def interval(v: Any) -> tuple[float, float]:
    """[low, high] from metrics.json, NaNs when absent."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return num(v[0]), num(v[1])
    return math.nan, math.nan


def includes_one(lo: float, hi: float) -> Any:
    """Whether [lo, hi] contains 1; NA when there is no interval."""
    return pd.NA if not (np.isfinite(lo) and np.isfinite(hi)) else bool(lo <= 1.0 <= hi)


def _run_basis(run: dict[str, Any]) -> str:
    b = run["metrics"].get("ci_basis")
    return b if b in ("repeats", "within-run") else "none"


def _n_repeats(run: dict[str, Any]) -> int:
    m = run["metrics"]
    if m.get("n_repeats"):
        return int(m["n_repeats"])
    if m.get("per_repeat"):
        return len(m["per_repeat"])
    return int(run["manifest"]["scenario"].get("repeats") or 1)


def _shared_rows(run: dict[str, Any]) -> pd.DataFrame:
    s = run["summary"]
    return s[s["phase"] == "shared"] if not s.empty else s


def _tenant_key(tenant: Any, copy: Any) -> str:
    return f"{tenant}#{int(copy)}"


# --- per run directory ------------------------------------------------------------------------

def run_meta(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run.get(k) for k in ("id", "study", "name", "label", "sharing", "category", "processes", "status",
                                    "gpu_model")}


def tenant_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run directory, phase, tenant copy): its summary.csv row as written."""
    rows = []
    for r in runs:
        if r["summary"].empty:
            continue
        per_tenant = {_tenant_key(t.get("tenant"), t.get("copy", 0)): t for t in r["metrics"].get("per_tenant") or []}
        for s in r["summary"].to_dict("records"):
            shared = s.get("phase") == "shared"
            lo, hi = num(s.get("slowdown_ci_low")), num(s.get("slowdown_ci_high"))
            pt = per_tenant.get(_tenant_key(s["tenant"], s["copy"]), {})
            if shared and not np.isfinite(lo):
                lo, hi = interval(pt.get("slowdown_ci"))
            verdict = s.get("verdict") if isinstance(s.get("verdict"), str) else pt.get("verdict")
            rows.append({**run_meta(r), "phase": s["phase"], "tenant": s["tenant"], "copy": int(s["copy"]),
                         "model": s.get("model"), "config": s.get("config"), "task": s.get("task"),
                         "n": int(num(s.get("n")) or 0), "n_repeats": num(s.get("n_repeats")),
                         "mean_ms": num(s.get("mean_ms")), "p50_ms": num(s.get("p50_ms")),
                         "p90_ms": num(s.get("p90_ms")), "p99_ms": num(s.get("p99_ms")),
                         "items_per_s": num(s.get("items_per_s")),
                         "slowdown": num(s.get("slowdown")) if shared else math.nan,
                         "slowdown_lo": lo if shared else math.nan, "slowdown_hi": hi if shared else math.nan,
                         "verdict": (verdict or ("no interval" if np.isfinite(num(s.get("slowdown"))) else ""))
                         if shared else "",
                         "noise_floor": num(s.get("noise_floor")), "basis": _run_basis(r) if shared else ""})
    return pd.DataFrame(rows)


# --- cells: the same work under the same mode, one or more run directories --------------------

def group_cells(runs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Runs with a shared phase grouped by cell (same work, same sharing mode), in input order."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        if r["shared"]:
            cells.setdefault(r["cell"], []).append(r)
    return list(cells.values())


def _per_repeat_metric(run: dict[str, Any], metric: str) -> list[float]:
    """The run's per-repeat values of a co-location metric; an old run's one value otherwise."""
    m = run["metrics"]
    reps = [num(p.get(metric)) for p in m.get("per_repeat") or []]
    if reps and all(np.isfinite(reps)):
        return reps
    if np.isfinite(num(m.get(metric))):
        return [num(m[metric])]
    slow = [num(t.get("slowdown")) for t in m.get("per_tenant") or []]
    if slow and all(np.isfinite(slow)) and all(v > 0 for v in slow):  # e.g. min/max fairness of a schema-1 run
        return [tstats.colocation(slow)[metric]]
    return []


def _per_repeat_slowdowns(run: dict[str, Any]) -> dict[str, list[float]]:
    """'tenant#copy' -> the run's per-repeat slowdowns (its summary slowdown once where absent)."""
    out: dict[str, list[float]] = {}
    for p in run["metrics"].get("per_repeat") or []:
        for k, v in (p.get("slowdown") or {}).items():
            if np.isfinite(num(v)):
                out.setdefault(k, []).append(num(v))
    for s in _shared_rows(run).to_dict("records"):
        k = _tenant_key(s["tenant"], s["copy"])
        if k not in out and np.isfinite(num(s.get("slowdown"))):
            out[k] = [num(s["slowdown"])]
    return out


def _solo_means(run: dict[str, Any], tenant: str) -> list[float]:
    """The tenant's solo mean per repeat (the run's own A/A), or its one solo mean."""
    for n in run["metrics"].get("noise") or []:
        if n.get("tenant") == tenant and n.get("solo_means_ms"):
            return [num(x) for x in n["solo_means_ms"]]
    s = run["summary"]
    if s.empty:
        return []
    solo = s[(s["phase"] == "solo") & (s["tenant"] == tenant)]
    return [num(v) for v in solo["mean_ms"]][:1]


def _cell_basis(runs: list[dict[str, Any]]) -> str:
    return "pooled" if len(runs) > 1 else _run_basis(runs[0])


def ci_note(basis: str, n_repeats: int, n_runs: int) -> str:
    """What an interval covers, in words."""
    text = BASIS_TEXT[basis]
    if basis == "pooled":
        return f"{text} ({n_repeats} repeats in {n_runs} run directories)"
    return f"{text} ({n_repeats} repeat{'s' if n_repeats != 1 else ''})"


def _combine(metric: str, runs: list[dict[str, Any]], single: tuple[float, float, float],
             values: Iterable[list[float]]) -> tuple[float, float, float]:
    """One run: its own (point, lo, hi). Several: the interval across all their repeats, by the
    run analysis's own rule (`tenancy.analysis.stats.interval`)."""
    if len(runs) == 1:
        return single
    return tstats.interval(metric, [v for vs in values for v in vs])


def cell_tables(runs: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, slowdowns): one row per cell with STP/ANTT/fairness and intervals, and one row per
    tenant copy of each cell with its slowdown, interval, verdict and whether the interval holds 1."""
    cell_rows, slow_rows = [], []
    for i, group in enumerate(group_cells(runs)):
        first = group[0]
        basis = _cell_basis(group)
        n_rep = sum(_n_repeats(r) for r in group)
        meta = {"cell": i, "name": first["name"], "label": first["label"], "sharing": first["sharing"],
                "category": first["category"], "kind": kind(first), "processes": first["processes"],
                "device": first["device"], "runs": ", ".join(r["id"] for r in group), "n_runs": len(group),
                "n_repeats": n_rep, "basis": basis, "ci": ci_note(basis, n_rep, len(group))}
        row = {**meta, "status": ", ".join(sorted({r["status"] for r in group})),
               "n_tenants": int(num(first["metrics"].get("n_tenants")) or len(_shared_rows(first))),
               **{f"is_{k}": first[f"is_{k}"] for k in ("pair", "group", "scaling", "control")},
               "key": first["key"]}
        for m in METRICS:
            fm = first["metrics"]
            single = (num(fm.get(m)), *interval(fm.get(f"{m}_ci")))
            if not np.isfinite(single[0]):
                vals = _per_repeat_metric(first, m)
                single = (vals[0] if vals else math.nan, math.nan, math.nan)
            p, lo, hi = _combine(m, group, single, (_per_repeat_metric(r, m) for r in group))
            row.update({m: p, f"{m}_lo": lo, f"{m}_hi": hi})
        cell_rows.append(row)
        per_run = [_per_repeat_slowdowns(r) for r in group]
        for s in _shared_rows(first).to_dict("records"):
            k = _tenant_key(s["tenant"], s["copy"])
            lo, hi = num(s.get("slowdown_ci_low")), num(s.get("slowdown_ci_high"))
            single = (num(s.get("slowdown")), lo, hi)
            p, lo, hi = _combine("slowdown", group, single, (pr.get(k, []) for pr in per_run))
            floor = num(s.get("noise_floor"))
            if len(group) > 1:
                floor = tstats.noise_floor([v for r in group for v in _solo_means(r, s["tenant"])])
                verdict = tstats.verdict(p, lo, hi, floor)
            else:
                verdict = s.get("verdict") if isinstance(s.get("verdict"), str) else ""
            if not (np.isfinite(lo) and np.isfinite(hi)):
                verdict = "no interval"
            slow_rows.append({**meta, "tenant": s["tenant"], "copy": int(s["copy"]), "model": s.get("model"),
                              "config": s.get("config"), "task": s.get("task"), "slowdown": p, "lo": lo, "hi": hi,
                              "includes_one": includes_one(lo, hi), "verdict": verdict, "noise_floor": floor,
                              "shared_mean_ms": num(s.get("mean_ms")), "items_per_s": num(s.get("items_per_s"))})
    return pd.DataFrame(cell_rows), pd.DataFrame(slow_rows)


def kind(run: dict[str, Any]) -> str:
    for k in ("control", "pair", "group", "scaling"):
        if run[f"is_{k}"]:
            return k
    return "other"


# --- tables the figures and findings draw on ---------------------------------------------------
