"""The common window: which samples of a launch ran while every tenant of it was running.

Only these count; a run whose tenant copy has none is incomplete. Tested on synthetic samples
(tests/test_analysis.py), never on timings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW_SHARE = 0.9
OPEN_LOOP = ("serve", "endpoint")  # the tasks whose samples are requests of an open-loop workload


def mark_window(df: pd.DataFrame, close_ns: int | None = None) -> pd.DataFrame:
    """Mark the samples of one launch that ran while every tenant of it was running.

    The window opens at the latest first start and closes at the earliest last end over the
    tenants with samples, or earlier at `close_ns`, when the launcher saw a tenant stop (a
    killed tenant hands in nothing). A closed-loop sample counts when at least WINDOW_SHARE of
    its duration lies inside (a tenant released by the barrier a moment before the others still
    counts its first sample); at a `close_ns` it must end by the close, since past it the
    survivor ran alone and a sample that straddles it is partly a solo one. A request of an open-loop (serving) tenant counts when it arrives
    inside the window, however long it then takes: its latency is the load's response, and
    dropping the requests that straddle the close would favour short ones. One that arrived just
    before the window opened counts under the closed-loop rule.
    """
    df = df.copy()
    if df.empty:
        df["in_window"] = pd.Series(dtype=bool)
        return df
    per = df.groupby(["tenant", "copy"])
    start, end = per["start_ns"].min().max(), per["end_ns"].max().min()
    if close_ns is not None:
        end = min(end, close_ns)
    inside = (np.minimum(df["end_ns"], end) - np.maximum(df["start_ns"], start)).clip(lower=0)
    by_share = inside >= WINDOW_SHARE * (df["end_ns"] - df["start_ns"])
    if close_ns is not None and close_ns <= end:
        by_share &= df["end_ns"] <= close_ns
    arrived = (df["start_ns"] >= start) & (df["start_ns"] < end)
    df["in_window"] = np.where(df["task"].isin(OPEN_LOOP), arrived | by_share, by_share) & (end > start)
    return df


def overlap(df: pd.DataFrame) -> dict[tuple[str, int], float]:
    """Per tenant copy: the share of its required (non-extra) samples inside the window."""
    req = df[~df["extra"]]
    return {k: float(g["in_window"].mean()) for k, g in req.groupby(["tenant", "copy"])}


def incomplete(samples: pd.DataFrame, launched: list[tuple[str, int, str, int]]) -> list[str]:
    """Why a run is incomplete: a launched tenant copy (phase, repeat, tenant, copy) with nothing
    in its launch's window; for a serving tenant, no request arriving in it."""
    win = samples[samples["in_window"]] if not samples.empty else samples
    have = set(zip(win["phase"], win["repeat"], win["tenant"], win["copy"])) if not win.empty else set()
    return [f"{phase} {tenant}#{copy} (repeat {rep}): nothing in the common window"
            for phase, rep, tenant, copy in launched if (phase, rep, tenant, copy) not in have]
