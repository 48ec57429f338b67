"""The report's numbers: tidy tables over runs, with bootstrap confidence intervals.

Intervals come from `scipy.stats.bootstrap` over the in-window latency samples: each tenant's
shared samples and its solo samples are resampled independently, and the statistic (a slowdown,
or STP / ANTT / fairness of a run) is recomputed from the resampled means. Samples of one
tenant are a time series, so an i.i.d. bootstrap is optimistic when they are autocorrelated;
the intervals show the sampling noise of the means, not run-to-run variation.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats


LEVEL = 0.95
N_RESAMPLES = 2000
MAX_PLOT_SAMPLES = 3000  # per box in the distribution figures


def bootstrap_ci(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], level: float = LEVEL,
                 n_resamples: int = N_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(point, low, high) of a statistic of independent samples; `statistic(*arrays, axis)` is vectorised.

    BCa first; the percentile interval when BCa is undefined (e.g. constant data).
    """
    data = tuple(np.asarray(s, dtype=float) for s in samples)
    point = float(statistic(*data, axis=-1))
    if any(len(d) < 2 for d in data):
        return point, np.nan, np.nan
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(data, statistic, n_resamples=n_resamples, vectorized=True, paired=False,
                                  confidence_level=level, method=method, rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if np.isfinite(lo) and np.isfinite(hi):
            return point, lo, hi
    return point, np.nan, np.nan


def mean_ci(x: np.ndarray, **kw) -> tuple[float, float, float]:
    return bootstrap_ci([x], lambda a, axis: a.mean(axis=axis), **kw)


def slowdown_ci(shared: np.ndarray, solo: np.ndarray, **kw) -> tuple[float, float, float]:
    """Shared mean over solo mean, the normalised latency NL."""
    return bootstrap_ci([shared, solo], lambda s, a, axis: s.mean(axis=axis) / a.mean(axis=axis), **kw)


def colocation_ci(shared: list[np.ndarray], solo: list[np.ndarray], solo_of: list[int],
                  **kw) -> dict[str, tuple[float, float, float]]:
    """STP, ANTT and Jain fairness of one shared launch, each with its interval.

    `shared[i]` are tenant copy i's shared samples; `solo[solo_of[i]]` its config's solo samples.
    """
    n = len(shared)

    def nl(*arrays, axis):
        means = [a.mean(axis=axis) for a in arrays]
        return np.stack([means[i] / means[n + solo_of[i]] for i in range(n)], axis=0)

    def stp(*a, axis):
        return (1.0 / nl(*a, axis=axis)).sum(axis=0)

    def antt(*a, axis):
        return nl(*a, axis=axis).mean(axis=0)

    def fairness(*a, axis):
        p = 1.0 / nl(*a, axis=axis)
        return p.sum(axis=0) ** 2 / (n * (p ** 2).sum(axis=0))

    data = list(shared) + list(solo)
    return {name: bootstrap_ci(data, fn, **kw) for name, fn in
            (("stp", stp), ("antt", antt), ("fairness", fairness))}


def _window(run: dict[str, Any]) -> pd.DataFrame:
    s = run["samples"]
    return s[s["in_window"].astype(bool)] if not s.empty else s


def _solo_samples(run: dict[str, Any]) -> dict[str, np.ndarray]:
    w = _window(run)
    return {c: g["latency_ms"].to_numpy() for c, g in w[w["phase"] == "solo"].groupby("config")}


def run_meta(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run[k] for k in ("study", "name", "label", "sharing", "category", "processes", "status")}


def tenant_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (run, phase, tenant copy): the summary plus the slowdown's interval."""
    rows = []
    for r in runs:
        if r["summary"].empty:
            continue
        solo = _solo_samples(r)
        w = _window(r)
        shared = {k: g["latency_ms"].to_numpy() for k, g in w[w["phase"] == "shared"].groupby(["tenant", "copy"])}
        for s in r["summary"].itertuples():
            lo = hi = np.nan
            slow = getattr(s, "slowdown", np.nan)
            if s.phase == "shared" and (s.tenant, s.copy) in shared and s.config in solo:
                slow, lo, hi = slowdown_ci(shared[(s.tenant, s.copy)], solo[s.config])
            rows.append({**run_meta(r), "phase": s.phase, "tenant": s.tenant, "copy": int(s.copy),
                         "model": s.model, "config": s.config, "n": int(s.n), "mean_ms": s.mean_ms,
                         "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "items_per_s": s.items_per_s,
                         "slowdown": slow, "slowdown_lo": lo, "slowdown_hi": hi})
    return pd.DataFrame(rows)


def colocation_table(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run with a shared phase: STP, ANTT, fairness and their intervals."""
    rows = []
    for r in runs:
        if not r["shared"]:
            continue
        solo = _solo_samples(r)
        w = _window(r)
        groups = [(k, g) for k, g in w[w["phase"] == "shared"].groupby(["tenant", "copy"])]
        configs = sorted(solo)
        usable = [(k, g) for k, g in groups if g["config"].iloc[0] in solo]
        if not usable:
            continue
        ci = colocation_ci([g["latency_ms"].to_numpy() for _, g in usable], [solo[c] for c in configs],
                           [configs.index(g["config"].iloc[0]) for _, g in usable])
        row = {**run_meta(r), "kind": _kind(r), "n_tenants": len(usable)}
        for m, (p, lo, hi) in ci.items():
            row.update({m: p, f"{m}_lo": lo, f"{m}_hi": hi})
        rows.append(row)
    return pd.DataFrame(rows)


def _kind(run: dict[str, Any]) -> str:
    return "group" if run["is_group"] else "pair" if run["is_pair"] else "scaling" if run["is_scaling"] else "other"


def pair_table(tenants: pd.DataFrame, runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Slowdown of each model next to each other model, from runs of exactly two processes."""
    pairs = {(r["study"], r["name"]) for r in runs if r["is_pair"]}
    if tenants.empty or not pairs:
        return pd.DataFrame()
    t = tenants[(tenants["phase"] == "shared")
                & np.array([(s, n) in pairs for s, n in zip(tenants["study"], tenants["name"])], dtype=bool)]
    rows = []
    for (_, _), g in t.groupby(["study", "name"]):
        if len(g) != 2:
            continue
        a, b = g.iloc[0], g.iloc[1]
        for me, other in ((a, b), (b, a)):
            rows.append({"study": me["study"], "sharing": me["sharing"], "model": me["model"],
                         "with": other["model"], "slowdown": me["slowdown"], "lo": me["slowdown_lo"],
                         "hi": me["slowdown_hi"], "run": me["name"]})
    return pd.DataFrame(rows)


def scaling_table(tenants: pd.DataFrame, runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Per run of N copies of one model: per-copy latency and aggregate throughput against N."""
    scal = {(r["study"], r["name"]) for r in runs if r["is_scaling"]}
    if tenants.empty or not scal:
        return pd.DataFrame()
    rows = []
    for (study, name), g in tenants.groupby(["study", "name"]):
        if (study, name) not in scal:
            continue
        sh, so = g[g["phase"] == "shared"], g[g["phase"] == "solo"]
        if sh.empty or so.empty:
            continue
        rows.append({"study": study, "run": name, "model": sh["model"].iloc[0], "sharing": sh["sharing"].iloc[0],
                     "processes": len(sh), "latency_ms": sh["mean_ms"].mean(), "latency_min_ms": sh["mean_ms"].min(),
                     "latency_max_ms": sh["mean_ms"].max(), "throughput": sh["items_per_s"].sum(),
                     "solo_latency_ms": so["mean_ms"].iloc[0], "solo_throughput": so["items_per_s"].iloc[0]})
    return pd.DataFrame(rows).sort_values(["model", "sharing", "processes"]) if rows else pd.DataFrame()


def sharing_table(coloc: pd.DataFrame, runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Runs that differ only in the sharing mode, one row per (run key, mode) for keys with two or more."""
    if coloc.empty:
        return pd.DataFrame()
    key = {(r["study"], r["name"]): r["key"] for r in runs}
    c = coloc.assign(key=[key[(s, n)] for s, n in zip(coloc["study"], coloc["name"])])
    multi = c.groupby(["study", "key"])["sharing"].transform("nunique") >= 2
    return c[multi].drop(columns="key").sort_values(["category", "label", "sharing"])


def latency_samples(runs: list[dict[str, Any]], seed: int = 0) -> pd.DataFrame:
    """In-window samples for the distribution figures: solo samples as `alone`, shared samples
    labelled by the run's tenant set; at most MAX_PLOT_SAMPLES per box."""
    frames = []
    for r in runs:
        w = _window(r)
        if w.empty:
            continue
        w = w[["phase", "tenant", "copy", "model", "config", "latency_ms"]].copy()
        w["context"] = np.where(w["phase"] == "solo", "alone", r["label"])
        w["sharing"] = r["sharing"]  # also on the solo rows: the mode of the run they are the baseline of
        w["study"] = r["study"]
        frames.append(w)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    shuffled = df.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(["study", "sharing", "config", "context"]).head(MAX_PLOT_SAMPLES).sort_index()


def compare_table(a: pd.DataFrame, b: pd.DataFrame, label_a: str, label_b: str) -> pd.DataFrame:
    """Runs and tenant copies present in both tenant tables, side by side (matched by run name)."""
    keys = ["name", "phase", "tenant", "copy"]
    cols = keys + ["model", "sharing", "mean_ms", "slowdown", "slowdown_lo", "slowdown_hi"]
    if a.empty or b.empty:
        return pd.DataFrame()
    m = a[cols].merge(b[cols].drop(columns=["model", "sharing"]), on=keys, suffixes=(f" [{label_a}]", f" [{label_b}]"))
    m["latency ratio B/A"] = m[f"mean_ms [{label_b}]"] / m[f"mean_ms [{label_a}]"]
    return m

