"""The study's tables over runs of many tenant sets: pairs, scaling with the number of
processes, sharing modes side by side, latency samples for the distributions, comparisons.
Each row comes from the per-run and per-cell tables of report/stats.py, never from samples again."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tenancy.report.stats import MAX_PLOT_SAMPLES, num


def pair_table(slowdowns: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per tenant copy of a two-process cell: its slowdown next to the other model."""
    if slowdowns.empty or cells.empty or not cells["is_pair"].any():
        return pd.DataFrame()
    pairs = set(cells.loc[cells["is_pair"], "cell"])
    rows = []
    for _, g in slowdowns[slowdowns["cell"].isin(pairs)].groupby("cell", sort=False):
        if len(g) != 2:
            continue
        for me, other in ((g.iloc[0], g.iloc[1]), (g.iloc[1], g.iloc[0])):
            rows.append({"sharing": me["sharing"], "model": me["model"], "with": other["model"],
                         "copy": me["copy"], "slowdown": me["slowdown"], "lo": me["lo"], "hi": me["hi"],
                         "includes_one": me["includes_one"], "verdict": me["verdict"], "pair": me["label"],
                         "basis": me["basis"], "n_repeats": me["n_repeats"], "runs": me["runs"]})
    return pd.DataFrame(rows)


def pair_matrix_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One cell of the matrix per (sharing, model, with). Two copies of one model (or one pair
    measured in two configurations): the mean slowdown, an interval spanning all their
    intervals, `includes_one` when any of them holds 1, the verdict when they agree."""
    if pairs.empty:
        return pd.DataFrame()

    def agg(g: pd.DataFrame) -> pd.Series:
        inc = g["includes_one"]
        verdicts = set(g["verdict"])
        return pd.Series({"slowdown": g["slowdown"].mean(), "lo": g["lo"].min(skipna=False),
                          "hi": g["hi"].max(skipna=False),
                          "includes_one": pd.NA if inc.isna().any() else bool(inc.astype(bool).any()),
                          "verdict": verdicts.pop() if len(verdicts) == 1 else "mixed",
                          "n_tenant_copies": len(g), "basis": ", ".join(sorted(set(g["basis"])))})

    return (pairs.groupby(["sharing", "model", "with"], sort=False)[list(pairs.columns)]
            .apply(agg).reset_index())


def capacity(run: dict[str, Any], copies: int) -> tuple[float, str]:
    """How many copies this machine can run at full speed at once, and why: the ceiling of the
    scaling figure's ideal line. CPU: cores / threads per copy. GPU time-slicing: one context at
    a time, more only where a copy alone left the GPU idle (100 / its solo utilisation, measured).
    GPU MPS or streams: no ceiling is known, so every copy at full speed (an upper bound)."""
    if run["device"] == "cpu" or str(run["device"]).startswith("cpu"):
        cores, threads = num(run.get("cpu_count")), num(run.get("threads_per_tenant"))
        if np.isfinite(cores) and np.isfinite(threads) and threads > 0:
            lim = max(1.0, math.floor(cores / threads))
            return lim, f"{cores:.0f} cores / {threads:.0f} thread(s) per copy"
        return float(copies), "cores or threads unknown: every copy at full speed"
    if run["sharing"] == "timeslice":
        gpu = run["gpu"]
        if not gpu.empty and {"phase", "gpu_util_pct"} <= set(gpu.columns):
            util = pd.to_numeric(gpu.loc[gpu["phase"] == "solo", "gpu_util_pct"], errors="coerce").mean()
            if np.isfinite(util) and util > 0:
                return max(1.0, 100.0 / util), f"time-slicing; alone the GPU was busy {util:.0f}% of the time"
        return 1.0, "time-slicing runs one context at a time"
    return float(copies), f"{run['sharing']}: no known ceiling, every copy at full speed (upper bound)"


def scaling_table(cells: pd.DataFrame, slowdowns: pd.DataFrame, runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Per cell of N copies of one model: mean slowdown and STP (aggregate throughput over one
    copy alone) with their intervals, throughput, and the ideal this machine could reach."""
    if cells.empty or not cells["is_scaling"].any():
        return pd.DataFrame()
    by_id = {r["id"]: r for r in runs}
    rows = []
    for c in cells[cells["is_scaling"]].to_dict("records"):
        run = by_id[c["runs"].split(", ")[0]]
        s = run["summary"]
        solo = s[s["phase"] == "solo"]
        sl = slowdowns[slowdowns["cell"] == c["cell"]]
        lim, why = capacity(run, c["processes"])
        solo_tp = num(solo["items_per_s"].iloc[0]) if not solo.empty else math.nan
        rows.append({"model": sl["model"].iloc[0] if not sl.empty else run["label"], "sharing": c["sharing"],
                     "processes": c["processes"], "label": c["label"], "slowdown": c["antt"],
                     "slowdown_lo": c["antt_lo"], "slowdown_hi": c["antt_hi"], "stp": c["stp"],
                     "stp_lo": c["stp_lo"], "stp_hi": c["stp_hi"], "throughput": sl["items_per_s"].sum(),
                     "solo_throughput": solo_tp, "ideal_stp": min(c["processes"], lim), "capacity": lim,
                     "capacity_why": why, "basis": c["basis"], "n_repeats": c["n_repeats"], "runs": c["runs"]})
    return pd.DataFrame(rows).sort_values(["model", "sharing", "processes"]).reset_index(drop=True)


def sharing_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Cells of the same work under two or more sharing modes, one row per (work, mode)."""
    if cells.empty:
        return pd.DataFrame()
    multi = cells.groupby("key")["sharing"].transform("nunique") >= 2
    return cells[multi].sort_values(["category", "label", "sharing"]).reset_index(drop=True)


def latency_samples(runs: list[dict[str, Any]], seed: int = 0) -> pd.DataFrame:
    """In-window samples for the distribution figures: solo samples as `alone`, shared samples
    labelled by the run's tenant set; `n` is every box's full count (at most MAX_PLOT_SAMPLES
    per box are kept for drawing)."""
    frames = []
    for r in runs:
        s = r["samples"]
        w = s[s["in_window"].astype(bool)] if not s.empty else s
        if w.empty:
            continue
        w = w[["phase", "tenant", "copy", "model", "config", "latency_ms"]].copy()
        shared_as = f"{r['label']} again (A/A)" if r["is_control"] else r["label"]
        w["context"] = np.where(w["phase"] == "solo", "alone", shared_as)
        w["sharing"] = r["sharing"]  # also on the solo rows: the mode of the run they are the baseline of
        w["study"] = r["study"]
        frames.append(w)
    if not frames:
        return pd.DataFrame()
    df = pd.concat(frames, ignore_index=True)
    by = ["study", "sharing", "config", "context"]
    df["n"] = df.groupby(by)["latency_ms"].transform("size")
    shuffled = df.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(by).head(MAX_PLOT_SAMPLES).sort_index()


def compare_table(inputs: list[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """Shared tenant copies present in the first input and at least one other, long format: one
    row per (input, scenario, tenant copy), with the slowdown ratio to the first input."""
    frames = [s.assign(input=label) for label, s in inputs if not s.empty]
    if len(frames) < 2 or inputs[0][1].empty:
        return pd.DataFrame()
    keys = ["name", "sharing", "tenant", "copy"]
    cols = ["input", *keys, "model", "label", "slowdown", "lo", "hi", "verdict", "basis", "n_repeats",
            "shared_mean_ms"]
    long = pd.concat(frames, ignore_index=True)[cols]
    base = (long[long["input"] == inputs[0][0]][[*keys, "slowdown", "shared_mean_ms"]].drop_duplicates(keys)
            .rename(columns={"slowdown": "_s0", "shared_mean_ms": "_m0"}))
    long = long.merge(base, on=keys)
    long = long[long.groupby(keys)["input"].transform("nunique") >= 2]
    long["slowdown / first input"] = long["slowdown"] / long["_s0"]
    long["shared latency / first input"] = long["shared_mean_ms"] / long["_m0"]
    return long.drop(columns=["_s0", "_m0"]).reset_index(drop=True)
