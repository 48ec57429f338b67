"""summary.csv's roofline columns: each row's floor on the measured peaks, what bounds it, and how
much of the device's compute (MFU) and bandwidth (MBU) the measured mean achieved.

Why separate from the analysis: the statistics do not depend on the device model; this does.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

from tenancy.analysis import roofline

COLUMNS = ["floor_ms", "bound", "mfu", "mbu"]
WORK = ("model", "size", "task", "batch", "seq", "new_tokens", "dtype")
BELOW_FLOOR = 0.99  # a mean under 99% of its floor is a measurement error (1% for peak noise)


def peak_for(peaks: dict[str, Any] | None, dtype: str) -> dict[str, Any] | None:
    """The measured peaks of a dtype from manifest.json `peaks` (None: not measured, or failed)."""
    if not isinstance(peaks, dict) or "error" in peaks:
        return None
    p = peaks.get(dtype)
    return p if isinstance(p, dict) and p.get("flops_per_s") and p.get("bytes_per_s") else None


def row_values(work: dict[str, Any], mean_ms: float, peak: dict[str, Any] | None) -> dict[str, Any]:
    """floor_ms, bound, mfu and mbu of one measured mean latency of `work` (NaN where unknown)."""
    f = roofline.tenant_floor(work, peak) if peak else None
    if f is None or not mean_ms or not math.isfinite(mean_ms):
        return {"floor_ms": math.nan, "bound": None, "mfu": math.nan, "mbu": math.nan}
    secs = mean_ms / 1000.0
    return {"floor_ms": f.floor_s * 1000.0, "bound": f.bound, "mfu": f.flops / secs / peak["flops_per_s"],
            "mbu": f.bytes / secs / peak["bytes_per_s"]}


def attach(summary: pd.DataFrame, samples: pd.DataFrame, peaks: dict[str, Any] | None) -> pd.DataFrame:
    """Add COLUMNS to every summary row (alone and shared), the work read from its samples."""
    if summary.empty:
        return summary.assign(**{c: pd.Series(dtype=object if c == "bound" else float) for c in COLUMNS})
    first = samples.groupby("config").first()
    vals = []
    for r in summary.itertuples():
        work = {k: first.at[r.config, k] for k in WORK} if r.config in first.index else None
        peak = peak_for(peaks, work["dtype"]) if work else None
        vals.append(row_values(work, r.mean_ms, peak) if work else row_values({}, math.nan, None))
    return summary.assign(**{c: [v[c] for v in vals] for c in COLUMNS})


def warnings(summary: pd.DataFrame) -> list[str]:
    """A mean below its floor is a measurement error (a timer, a skipped call), never a result."""
    if summary.empty or "floor_ms" not in summary:
        return []
    out = []
    for r in summary.itertuples():
        if math.isfinite(r.floor_ms) and r.mean_ms < BELOW_FLOOR * r.floor_ms:
            out.append(f"{r.phase} {r.tenant}#{r.copy}: mean {r.mean_ms:.3g} ms is below its roofline floor "
                       f"{r.floor_ms:.3g} ms: a measurement error, not a result")
    return out
