"""From samples to numbers: per-tenant statistics, slowdowns and co-location metrics over the
samples the window rule (analysis/window.py) kept.

The formulas and interval methods live in `tenancy.analysis.stats`; this module decides what goes into
them. A repeat is the unit: every repeat has its own solo baseline, a tenant's slowdown is the
mean of its per-repeat slowdowns, and intervals are across repeats (or, with fewer than three, a
block bootstrap within the launches). Definitions: results/README.md.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from tenancy.analysis import floors as roofline_columns
from tenancy.analysis import stats
from tenancy.analysis.window import OPEN_LOOP

CV_WARN = 0.10  # IQR / median (or CV of repeat means) at or above this is flagged
OVERLAP_WARN = 0.90
MIN_WINDOW_SAMPLES = 10
GROUP = ["phase", "tenant", "copy"]
SUMMARY_COLUMNS = ["phase", "tenant", "copy", "model", "task", "config", "n", "n_repeats", "mean_ms", "p50_ms",
                   "p90_ms", "p99_ms", "std_ms", "cv", "iqr_over_median", "items_per_s", "tokens_per_s", "prefill_ms",
                   "decode_ms_per_token", "host_share", "slowdown", "slowdown_ci_low", "slowdown_ci_high", "verdict",
                   "noise_floor", *roofline_columns.COLUMNS]


def _distribution(g: pd.DataFrame) -> dict[str, Any]:
    """Pooled statistics of one tenant copy's in-window samples; percentiles need enough samples."""
    lat = g["latency_ms"].to_numpy(dtype=float)
    first = g.iloc[0]
    p50, p90, p99 = stats.percentiles(lat, (50, 90, 99))
    q25, med, q75 = np.percentile(lat, [25, 50, 75])
    mean = float(lat.mean())
    std = float(lat.std(ddof=1)) if len(lat) > 1 else 0.0
    row = {"model": first["model"], "task": first["task"], "config": first["config"], "n": len(lat),
           "n_repeats": int(g["repeat"].nunique()), "mean_ms": mean, "p50_ms": p50, "p90_ms": p90,
           "p99_ms": p99, "std_ms": std, "cv": std / mean if mean else np.nan,
           "iqr_over_median": (q75 - q25) / med if med else np.nan,
           "items_per_s": first["batch"] * 1000.0 / mean, "tokens_per_s": np.nan,
           "prefill_ms": np.nan, "decode_ms_per_token": np.nan,
           # the host's share of each iteration's wall time: near 1, the tenant is launch-bound
           "host_share": g["host_ms"].mean() / ((g["end_ns"] - g["start_ns"]).mean() / 1e6)}
    if first["task"] == "generate":
        row["tokens_per_s"] = first["batch"] * first["new_tokens"] * 1000.0 / mean
    if first["task"] in ("generate", *OPEN_LOOP):  # serve: prefill_ms is TTFT, decode is TPOT
        row["prefill_ms"] = float(g["prefill_ms"].mean())
        row["decode_ms_per_token"] = float(g["decode_ms_per_token"].mean())
    if first["task"] in OPEN_LOOP:  # a request is the item; its rate is what the server achieved
        spans = g.groupby("repeat").apply(lambda r: (r["end_ns"].max() - r["start_ns"].min()) / 1e9,
                                          include_groups=False)
        row["items_per_s"] = len(g) / spans.sum() if spans.sum() > 0 else np.nan
        row["p99_ttft_ms"] = stats.percentiles(g["prefill_ms"].dropna().to_numpy(), (99,))[0]
    return row


def per_repeat(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (repeat, shared tenant copy): its shared mean, its repeat's solo mean of the
    same work, and their ratio, the slowdown (NaN when either side has nothing in the window)."""
    win = samples[samples["in_window"]]
    means = win.groupby(["phase", "repeat", "tenant", "copy", "config", "task"], as_index=False)["latency_ms"].mean()
    solo = means[means["phase"] == "solo"].groupby(["repeat", "config"])["latency_ms"].first()
    shared_keys = samples[samples["phase"] == "shared"][["repeat", "tenant", "copy", "config", "task"]].drop_duplicates()
    rows = []
    for k in shared_keys.itertuples(index=False):
        m = means[(means["phase"] == "shared") & (means["repeat"] == k.repeat) & (means["tenant"] == k.tenant)
                  & (means["copy"] == k.copy)]
        sh = float(m["latency_ms"].iloc[0]) if len(m) else math.nan
        base = float(solo.get((k.repeat, k.config), math.nan))
        rows.append({"repeat": int(k.repeat), "tenant": k.tenant, "copy": int(k.copy), "config": k.config,
                     "task": k.task, "shared_ms": sh, "solo_ms": base, "slowdown": sh / base})
    return pd.DataFrame(rows, columns=["repeat", "tenant", "copy", "config", "task", "shared_ms", "solo_ms",
                                       "slowdown"])


def noise(samples: pd.DataFrame) -> pd.DataFrame:
    """Per distinct work: its solo mean in every repeat (the run's own A/A control), their CV
    and noise floor (the largest relative difference between two solo launches)."""
    win = samples[samples["in_window"] & (samples["phase"] == "solo")]
    rows = []
    for config, g in win.groupby("config", sort=False):
        means = g.groupby("repeat")["latency_ms"].mean().to_numpy()
        rows.append({"tenant": g["tenant"].iloc[0], "config": config, "solo_means_ms": [float(m) for m in means],
                     "cv": float(means.std(ddof=1) / means.mean()) if len(means) > 1 else math.nan,
                     "noise_floor": stats.noise_floor(means)})
    return pd.DataFrame(rows, columns=["tenant", "config", "solo_means_ms", "cv", "noise_floor"])


def _launch(parts: list[pd.DataFrame]) -> stats.Launch | None:
    """The in-window samples of one launch's tenants, for the block bootstrap (None if one is empty)."""
    if any(p.empty for p in parts):
        return None
    return stats.Launch([p["start_ns"].to_numpy(dtype=float) for p in parts],
                        [p["latency_ms"].to_numpy(dtype=float) for p in parts])


def _within_run(samples: pd.DataFrame, tenants: list[tuple[str, int]], statistics: dict,
                seed: int) -> dict[str, tuple[float, float]]:
    """Block-bootstrap intervals of `statistics` (name -> [tenants, R] slowdowns -> [R]) over the
    repeats, all from one set of resamples."""
    win = samples[samples["in_window"]]
    config_of = samples[samples["phase"] == "shared"].groupby(["tenant", "copy"])["config"].first()
    configs = list(dict.fromkeys(config_of[k] for k in tenants))
    repeats = []
    for _, g in win.groupby("repeat"):
        sh = g[g["phase"] == "shared"]
        shared = _launch([sh[(sh["tenant"] == t) & (sh["copy"] == c)] for t, c in tenants])
        solos = [_launch([g[(g["phase"] == "solo") & (g["config"] == c)]]) for c in configs]
        if shared is not None and all(solos):
            repeats.append((shared, solos, [configs.index(config_of[k]) for k in tenants]))
    if not repeats:
        return {name: (math.nan, math.nan) for name in statistics}
    return stats.bootstrap_repeats(repeats, statistics, seed=seed)


def _interval(metric: str, values: Iterable[float], fallback) -> tuple[float, float, float, str]:
    """(point, low, high, basis): across repeats with enough of them, else the fallback's."""
    vals = [v for v in values if np.isfinite(v)]
    point, lo, hi = stats.interval(metric, vals) if vals else (math.nan, math.nan, math.nan)
    if len(vals) >= stats.MIN_REPEATS_FOR_T:
        return point, lo, hi, "repeats"
    lo, hi = fallback() if vals else (math.nan, math.nan)
    return point, lo, hi, "within-run"


CI_METHODS = {"repeats": "student-t over repeats", "within-run": "moving-block bootstrap within launches"}


def analyze(samples: pd.DataFrame, orders: dict[int, str] | None = None, seed: int = 0,
            peaks: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """The summary table and the metrics of a run, from its window-marked samples; `peaks`
    (manifest.json `peaks`) add the roofline columns."""
    orders = orders or {}
    if samples.empty:  # still the table's columns: a run that measured nothing has an empty table
        return pd.DataFrame(columns=SUMMARY_COLUMNS), {**_empty_colocation(), "per_repeat": [], "per_tenant": [],
                                                        "noise": [], "serving": []}
    win = samples[samples["in_window"]]
    rows = [{"phase": p, "tenant": t, "copy": int(c), **_distribution(g)}
            for (p, t, c), g in win.groupby(GROUP, sort=False)]
    summary = pd.DataFrame(rows)
    reps = per_repeat(samples)
    floors = noise(samples)
    floor_of = dict(zip(floors["config"], floors["noise_floor"]))
    per_tenant = []
    tenants = list(dict.fromkeys(zip(reps["tenant"], reps["copy"])))
    for i, (t, c) in enumerate(tenants):
        r = reps[(reps["tenant"] == t) & (reps["copy"] == c)]
        point, lo, hi, basis = _interval(
            "slowdown", r["slowdown"],
            lambda: _within_run(samples, [(t, c)], {"slowdown": lambda nl: nl[0]}, seed + i)["slowdown"])
        floor = floor_of.get(r["config"].iloc[0], 0.0)
        per_tenant.append({"tenant": t, "copy": int(c), "task": r["task"].iloc[0], "slowdown": point,
                           "slowdown_ci": [lo, hi], "verdict": stats.verdict(point, lo, hi, floor),
                           "noise_floor": floor, "normalised_progress": 1 / point if point else math.nan,
                           "ci_basis": basis})
    if not summary.empty:
        summary = roofline_columns.attach(_attach_slowdowns(summary, per_tenant), samples, peaks)
    metrics = {**colocation_metrics(samples, reps, orders, seed), "per_tenant": per_tenant,
               "noise": floors.to_dict("records"), "serving": serving_slowdowns(summary, samples)}
    return summary, metrics


def _attach_slowdowns(summary: pd.DataFrame, per_tenant: list[dict]) -> pd.DataFrame:
    cols = ["slowdown", "slowdown_ci_low", "slowdown_ci_high", "verdict", "noise_floor"]
    by = {(p["tenant"], p["copy"]): p for p in per_tenant}
    out = {c: [] for c in cols}
    for r in summary.itertuples():
        p = by.get((r.tenant, r.copy)) if r.phase == "shared" else None
        vals = ([p["slowdown"], p["slowdown_ci"][0], p["slowdown_ci"][1], p["verdict"], p["noise_floor"]]
                if p else [math.nan, math.nan, math.nan, None, math.nan])
        for c, v in zip(cols, vals):
            out[c].append(v)
    return summary.assign(**out)


def _empty_colocation() -> dict[str, Any]:
    return {**{k: None for k in ("stp", "stp_ci", "antt", "antt_ci", "fairness", "fairness_ci", "min_max_fairness",
                                  "min_max_fairness_ci", "ci_basis", "ci_method")},
            "n_tenants": 0, "n_repeats": 0, "level": stats.LEVEL}


def colocation_metrics(samples: pd.DataFrame, reps: pd.DataFrame, orders: dict[int, str], seed: int) -> dict[str, Any]:
    """STP, ANTT, Jain and min/max fairness over the closed-loop shared tenant copies: per repeat,
    then their mean with an interval. Serving tenants are left out (their E2E is queueing under an
    open-loop load, not progress) and report their own slowdowns."""
    closed = reps[~reps["task"].isin(OPEN_LOOP)]
    tenants = list(dict.fromkeys(zip(closed["tenant"], closed["copy"])))
    out = _empty_colocation()
    per: list[dict[str, Any]] = []
    for r, g in closed.groupby("repeat"):
        entry: dict[str, Any] = {"repeat": int(r), "order": orders.get(int(r))}
        sl = {f"{t}#{c}": float(s) for t, c, s in zip(g["tenant"], g["copy"], g["slowdown"])}
        if len(g) == len(tenants) and g["slowdown"].notna().all():
            entry.update(stats.colocation(g["slowdown"].to_numpy()))
        entry["slowdown"] = sl
        per.append(entry)
    out["per_repeat"] = per
    complete = [p for p in per if "stp" in p]
    if not tenants or not complete:
        return out
    out.update(n_tenants=len(tenants), n_repeats=len(complete))
    names = ("stp", "antt", "fairness", "min_max_fairness")
    # fewer than 3 repeats: one block bootstrap serves all four metrics
    boot = functools.cache(lambda: _within_run(
        samples, tenants, {n: lambda nl, n=n: stats.colocation_arrays(nl)[n] for n in names}, seed))
    for name in names:
        point, lo, hi, basis = _interval(name, [p[name] for p in complete], lambda name=name: boot()[name])
        out[name], out[f"{name}_ci"] = point, [lo, hi]
        out["ci_basis"], out["ci_method"] = basis, CI_METHODS[basis]
    return out


def serving_slowdowns(summary: pd.DataFrame, samples: pd.DataFrame) -> list[dict[str, float]]:
    """For each shared serving tenant: the slowdown of every latency metric against its solo run
    (per repeat against that repeat's solo run, then averaged), and its throughput ratio."""
    if summary.empty or (~summary["task"].isin(OPEN_LOOP)).all():
        return []
    win = samples[samples["in_window"] & samples["task"].isin(OPEN_LOOP)]
    out = []
    for r in summary[(summary["phase"] == "shared") & summary["task"].isin(OPEN_LOOP)].itertuples():
        ratios: dict[str, list[float]] = {}
        for rep, g in win.groupby("repeat"):
            sh = g[(g["phase"] == "shared") & (g["tenant"] == r.tenant) & (g["copy"] == r.copy)]
            so = g[(g["phase"] == "solo") & (g["config"] == r.config)]
            if sh.empty or so.empty:
                continue
            a, b = _distribution(sh), _distribution(so)
            for name, col in [("e2e_mean", "mean_ms"), ("e2e_p99", "p99_ms"), ("ttft_mean", "prefill_ms"),
                              ("ttft_p99", "p99_ttft_ms"), ("tpot_mean", "decode_ms_per_token"),
                              ("throughput", "items_per_s")]:
                ratios.setdefault(name, []).append(a[col] / b[col])
        if ratios:
            row = {"tenant": r.tenant, "copy": int(r.copy), "repeats": len(ratios["e2e_mean"])}
            for name, vals in ratios.items():
                key = "throughput_ratio" if name == "throughput" else f"{name}_slowdown"
                finite = [v for v in vals if np.isfinite(v)]
                row[key] = float(np.mean(finite)) if finite else None
            out.append(row)
    return out


def warnings_for(summary: pd.DataFrame, metrics: dict[str, Any], overlaps: dict[str, float]) -> list[str]:
    """Measurement problems (solo noise, artefacts) apart from findings (shared variance)."""
    out = []
    for r in summary.itertuples():
        who = f"{r.phase} {r.tenant}#{r.copy}"
        if r.iqr_over_median >= CV_WARN:
            what = ("solo variance: a measurement problem (the baseline is unsteady)" if r.phase == "solo"
                    else "shared variance: part of the effect (contention varies)")
            out.append(f"{who}: {what}; IQR/median {r.iqr_over_median:.2f} >= {CV_WARN}")
        if r.n < MIN_WINDOW_SAMPLES:
            out.append(f"{who}: only {r.n} samples in the common window")
    for n in metrics.get("noise", []):
        if np.isfinite(n["cv"]) and n["cv"] >= CV_WARN:
            out.append(f"solo {n['tenant']}: solo variance across repeats: its solo means differ by CV "
                       f"{n['cv']:.2f} (noise floor {n['noise_floor']:.2f}): a measurement problem")
    for p in metrics.get("per_tenant", []):
        if p["verdict"] == "faster":
            out.append(f"shared {p['tenant']}#{p['copy']}: faster shared than alone (slowdown {p['slowdown']:.3f}, "
                       f"interval {p['slowdown_ci'][0]:.3f}-{p['slowdown_ci'][1]:.3f}): a measurement artefact, "
                       "not a finding")
    stp, n = metrics.get("stp"), metrics.get("n_tenants")
    if stp is not None and n and stp > n:
        lo, hi = metrics.get("stp_ci") or (math.nan, math.nan)
        if np.isfinite(lo) and lo <= n:
            out.append(f"STP {stp:.2f} is above the number of tenants ({n}) but its interval [{lo:.2f}, {hi:.2f}] "
                       "includes it: noise, not a gain")
        else:
            out.append(f"STP {stp:.2f} exceeds the number of tenants ({n}) beyond its interval: a measurement "
                       "artefact (the baseline or the shared phase ran in a different machine state), not a finding")
    out += roofline_columns.warnings(summary)
    for who, frac in overlaps.items():
        if frac < OVERLAP_WARN:
            out.append(f"{who}: only {frac:.0%} of its samples overlap every other tenant")
    return out
