"""From samples to numbers: the common window, per-tenant statistics, co-location metrics.

Definitions follow REFERENCE.md: slowdown NL = shared mean / solo mean, NP = 1/NL,
STP = sum NP, ANTT = mean NL, Jain fairness over NP.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

CV_WARN = 0.10  # IQR / median at or above this is flagged (torch.utils.benchmark's rule)
OVERLAP_WARN = 0.90
MIN_WINDOW_SAMPLES = 10
GROUP = ["phase", "tenant", "copy"]
WINDOW_SHARE = 0.9


def mark_window(df: pd.DataFrame) -> pd.DataFrame:
    """Mark the samples of one launch that ran while every tenant of it was running.

    The window opens at the latest first start and closes at the earliest last end; since every
    tenant keeps running until all have their samples, it spans the slowest tenant's samples.
    A sample counts when at least WINDOW_SHARE of its duration lies inside: the first sample of
    a slow tenant, released by the barrier a fraction of a millisecond before a fast one, counts.
    """
    df = df.copy()
    if df.empty:
        df["in_window"] = pd.Series(dtype=bool)
        return df
    per = df.groupby(["tenant", "copy"])
    start, end = per["start_ns"].min().max(), per["end_ns"].max().min()
    inside = (np.minimum(df["end_ns"], end) - np.maximum(df["start_ns"], start)).clip(lower=0)
    df["in_window"] = inside >= WINDOW_SHARE * (df["end_ns"] - df["start_ns"])
    return df


def overlap(df: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Per tenant copy: the share of its required (non-extra) samples inside the window."""
    req = df[~df["extra"]]
    return {k: float(g["in_window"].mean()) for k, g in req.groupby(["tenant", "copy"])}


def summarize(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per (phase, tenant, copy) over in-window samples, all repeats pooled."""
    rows = []
    win = samples[samples["in_window"]]
    for (phase, tenant, copy), g in win.groupby(GROUP, sort=False):
        lat = g["latency_ms"].to_numpy()
        first = g.iloc[0]
        q25, p50, q75, p90, p99 = np.percentile(lat, [25, 50, 75, 90, 99])
        mean = float(lat.mean())
        std = float(lat.std(ddof=1)) if len(lat) > 1 else 0.0
        row = {
            "phase": phase, "tenant": tenant, "copy": int(copy), "model": first["model"],
            "task": first["task"], "config": first["config"], "n": len(lat),
            "mean_ms": mean, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "std_ms": std,
            "cv": std / mean if mean else np.nan, "iqr_over_median": (q75 - q25) / p50 if p50 else np.nan,
            "items_per_s": first["batch"] * 1000.0 / mean,
            "host_share": g["host_ms"].mean() / ((g["end_ns"] - g["start_ns"]).mean() / 1e6),
            "tokens_per_s": np.nan, "prefill_ms": np.nan, "decode_ms_per_token": np.nan,
        }
        if first["task"] == "generate":
            row["tokens_per_s"] = first["batch"] * first["new_tokens"] * 1000.0 / mean
        if first["task"] in ("generate", "serve"):  # serve: prefill_ms is TTFT, decode is TPOT
            row["prefill_ms"] = float(g["prefill_ms"].mean())
            row["decode_ms_per_token"] = float(g["decode_ms_per_token"].mean())
        if first["task"] == "serve":  # a request is the item; its rate is what the server achieved
            span_s = (g["end_ns"].max() - g["start_ns"].min()) / 1e9
            row["items_per_s"] = len(g) / span_s if span_s > 0 else np.nan
            row["p99_ttft_ms"] = float(np.nanpercentile(g["prefill_ms"], 99))
        rows.append(row)
    summary = pd.DataFrame(rows)
    if summary.empty:
        return summary
    solo = summary[summary["phase"] == "solo"].groupby("config")["mean_ms"].first()
    summary["slowdown"] = np.where(
        summary["phase"] == "shared", summary["mean_ms"] / summary["config"].map(solo), np.nan)
    return summary


def serving_slowdowns(summary: pd.DataFrame) -> list[dict[str, float]]:
    """For each shared serving tenant: the slowdown of every latency metric against its solo run."""
    if summary.empty or "p99_ttft_ms" not in summary:
        return []
    solo = summary[summary["phase"] == "solo"].set_index("config")
    out = []
    for r in summary[(summary["phase"] == "shared") & (summary["task"] == "serve")].itertuples():
        if r.config not in solo.index:
            continue
        base = solo.loc[r.config]
        out.append({"tenant": r.tenant, "copy": r.copy, **{
            f"{name}_slowdown": float(getattr(r, col) / base[col]) for name, col in [
                ("e2e_mean", "mean_ms"), ("e2e_p99", "p99_ms"), ("ttft_mean", "prefill_ms"),
                ("ttft_p99", "p99_ttft_ms"), ("tpot_mean", "decode_ms_per_token")]},
            "throughput_ratio": float(r.items_per_s / base["items_per_s"])})
    return out


def colocation(summary: pd.DataFrame) -> dict[str, float | None]:
    """STP, ANTT and Jain fairness over the shared tenant copies (None without a shared phase)."""
    nl = summary.loc[summary["phase"] == "shared", "slowdown"].dropna().to_numpy() if not summary.empty else []
    if len(nl) == 0:
        return {"stp": None, "antt": None, "fairness": None, "n_tenants": 0}
    return {"n_tenants": int(len(nl)), **colocation_from_slowdowns(nl)}


def colocation_from_slowdowns(nl) -> dict[str, float]:
    nl = np.asarray(nl, dtype=float)
    np_ = 1.0 / nl
    return {
        "stp": float(np_.sum()),
        "antt": float(nl.mean()),
        "fairness": float(np_.sum() ** 2 / (len(np_) * (np_ ** 2).sum())),
    }


def warnings_for(summary: pd.DataFrame, overlaps: dict[str, float]) -> list[str]:
    out = []
    for r in summary.itertuples():
        who = f"{r.phase} {r.tenant}#{r.copy}"
        if r.iqr_over_median >= CV_WARN:
            out.append(f"{who}: high variance (IQR/median {r.iqr_over_median:.2f} >= {CV_WARN})")
        if r.n < MIN_WINDOW_SAMPLES:
            out.append(f"{who}: only {r.n} samples in the common window")
    for who, frac in overlaps.items():
        if frac < OVERLAP_WARN:
            out.append(f"{who}: only {frac:.0%} of its samples overlap every other tenant")
    return out
