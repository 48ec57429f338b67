"""gpu.parquet: the monitor's rows as a table, marked against each launch's common window, and
summarised per launch (utilisation, peak memory, power, energy and joules per item)."""
from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pandas as pd

from tenancy.gpu.monitor.nvml import FIELDS, THROTTLING_BITS


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a table with fixed columns; processes become JSON text ([[pid, MiB], ...])."""
    df = pd.DataFrame(rows)
    for col in FIELDS:
        if col not in df:
            df[col] = None
    procs = df["processes"].apply(lambda p: p if isinstance(p, (list, tuple)) else [])
    df["n_processes"] = procs.apply(len).astype("int64")
    df["processes"] = procs.apply(lambda p: json.dumps([[int(pid), round(float(mib), 1)] for pid, mib in p]))
    for col in FIELDS:
        if col not in ("throttle", "processes", "n_processes"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["throttle"] = df["throttle"].astype("string")
    df["repeat"] = df["repeat"].astype("int64")
    df["time_ns"] = df["time_ns"].astype("int64")
    return df


def _launch_window(samples: pd.DataFrame, phase: str, repeat: int, launch: str) -> pd.DataFrame:
    if samples.empty:
        return samples
    s = samples[(samples["phase"] == phase) & (samples["repeat"] == repeat)]
    if launch != "shared":
        s = s[s["tenant"] == launch]
    return s[s["in_window"]]


def window(gpu: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """in_window: the row was taken inside its launch's common window."""
    gpu = gpu.copy()
    gpu["in_window"] = False
    for (phase, repeat, launch), g in gpu.groupby(["phase", "repeat", "launch"]):
        w = _launch_window(samples, phase, repeat, launch)
        if not w.empty:
            t = g["time_ns"]
            gpu.loc[g.index, "in_window"] = (t >= w["start_ns"].min()) & (t <= w["end_ns"].max())
    return gpu


def energy_j(g: pd.DataFrame, start_ns: int | None = None, end_ns: int | None = None) -> float:
    """Energy from start to end (default: the rows' span): the NVML counter interpolated at both
    ends, else the power integrated over time; NaN when the rows do not cover the span."""
    for col in ("energy_j", "power_w"):
        r = g[["time_ns", col]].dropna().sort_values("time_ns")
        if len(r) < 2:
            continue
        t, v = r["time_ns"].to_numpy(dtype=float), r[col].to_numpy(dtype=float)
        a = t[0] if start_ns is None else float(start_ns)
        b = t[-1] if end_ns is None else float(end_ns)
        if a < t[0] or b > t[-1] or b <= a:
            return float("nan")
        if col == "energy_j":
            return float(np.interp(b, t, v) - np.interp(a, t, v))
        inside = (t > a) & (t < b)
        ts = np.concatenate([[a], t[inside], [b]])
        ws = np.interp(ts, t, v)
        return float(np.sum((ws[1:] + ws[:-1]) / 2 * np.diff(ts)) / 1e9)
    return float("nan")


def launch_summary(gpu: pd.DataFrame, samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Per launch, over its common window: utilisation, peak memory, power, energy, J per item."""
    out = []
    for (phase, repeat, launch), g in gpu.groupby(["phase", "repeat", "launch"], sort=False):
        w = _launch_window(samples, phase, repeat, launch)
        gw = g[g["in_window"]] if "in_window" in g else g
        items = int(w["batch"].sum()) if not w.empty else 0
        tokens = int((w["batch"] * w["new_tokens"]).where(w["task"] == "generate", 0).sum()) if not w.empty else 0
        start, end = (int(w["start_ns"].min()), int(w["end_ns"].max())) if not w.empty else (None, None)
        energy = energy_j(g, start, end)  # all rows of the launch: the counter is interpolated at the edges
        mask = gw["throttle_reasons"].dropna().astype("int64")

        def mean(col: str) -> float | None:
            v = gw[col].mean()
            return None if pd.isna(v) else float(v)

        def peak(col: str) -> float | None:
            v = gw[col].max()
            return None if pd.isna(v) else float(v)

        out.append({
            "phase": phase, "repeat": int(repeat), "launch": launch, "rows": int(len(gw)),
            "window_s": (float(w["end_ns"].max() - w["start_ns"].min()) / 1e9) if not w.empty else None,
            "gpu_util_mean_pct": mean("gpu_util_pct"), "mem_util_mean_pct": mean("mem_util_pct"),
            "mem_used_peak_mib": peak("mem_used_mib"), "sm_clock_mean_mhz": mean("sm_clock_mhz"),
            "power_mean_w": mean("power_w"), "temperature_max_c": peak("temperature_c"),
            "throttled_share": float(((mask & THROTTLING_BITS) != 0).mean()) if len(mask) else None,
            "energy_j": None if np.isnan(energy) else energy, "items": items,
            "j_per_item": energy / items if items and not np.isnan(energy) else None,
            "j_per_token": energy / tokens if tokens and not np.isnan(energy) else None,
        })
    return out


def our_pids(manifest: dict[str, Any]) -> set[int]:
    """Pids of this run: the CLI, every tenant process, and the MPS daemon and servers."""
    pids = {os.getpid()} | {t["pid"] for t in manifest.get("tenants", []) if t.get("pid")}
    sharing = manifest.get("sharing") or {}
    pids |= set(sharing.get("daemon_pids") or [])
    for a in sharing.get("attach") or []:
        pids |= set(a.get("servers") or [])
    return pids


def foreign_processes(gpu: pd.DataFrame, ours: set[int]) -> list[dict[str, Any]]:
    """Processes NVML saw on the GPU that are not ours, with their peak memory."""
    seen: dict[int, float] = {}
    for text in gpu["processes"]:
        for pid, mib in json.loads(text):
            seen[pid] = max(seen.get(pid, 0.0), mib)
    foreign = [{"pid": pid, "peak_mem_mib": mib} for pid, mib in sorted(seen.items()) if pid not in ours]
    if foreign and not (set(seen) & ours):
        for f in foreign:  # inside a container NVML may report host pids: none of ours would match
            f["note"] = "none of our pids were visible to NVML (a container's pid namespace?)"
    return foreign


def foreign_warnings(foreign: list[dict[str, Any]]) -> list[str]:
    if not foreign:
        return []
    listed = ", ".join(f"{f['pid']} ({f['peak_mem_mib']:.0f} MiB)" for f in foreign[:5])
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    hint = f"; {foreign[0]['note']}" if "note" in foreign[0] else ""
    return [f"foreign processes on the GPU during the run: pid {listed}{more}{hint}"]
