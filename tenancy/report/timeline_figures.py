"""The GPU timeline figures: NVML samples over a run, with every tenant's measured spans."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from tenancy.report.plotting import figure, figure_style, palette, save_png, slug

MAX_TIMELINES = 12
TIME_COLUMNS = ("time_ns", "t_ns", "host_ns", "timestamp_ns", "perf_counter_ns")


def timelines(runs: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    title = "GPU utilisation and power over time"
    with_gpu = [r for r in runs if not r["gpu"].empty]
    if not with_gpu:
        return [figure("timeline", title, "", note="no gpu.parquet in these runs (no GPU monitor ran)")]
    rank = {True: 0, False: 1}
    with_gpu.sort(key=lambda r: (rank[r["is_group"]], rank[r["is_pair"]], r["name"]))
    figs = []
    for r in with_gpu[:MAX_TIMELINES]:
        figs.append(_timeline(r, out))
    if len(with_gpu) > MAX_TIMELINES:
        figs.append(figure("timeline-more", title, "", note=f"{len(with_gpu) - MAX_TIMELINES} more runs have "
                           "gpu.parquet; their timelines are left out to keep the report short"))
    return figs


def _timeline(run: dict[str, Any], out: Path) -> dict[str, Any]:
    gpu = run["gpu"]
    fid = f"timeline-{run['id']}"
    title = f"GPU timeline: {run['id']}"
    tcol = next((c for c in TIME_COLUMNS if c in gpu.columns), None)
    panels = [(c, lab) for c, lab in (
        (_first(gpu, ("gpu_util_pct", "gpu_util", "util_gpu", "sm_util")), "GPU utilisation (%)"),
        (_first(gpu, ("power_w", "power")), "power (W)"),
        (_first(gpu, ("mem_used_mib", "mem_used", "memory_used_mib", "memory_used")), "memory used (MiB)"))
        if c is not None]
    if tcol is None or not panels:
        return figure(fid, title, "", note=f"{run['path']}/gpu.parquet: no time column ({', '.join(TIME_COLUMNS)}) "
                      "or no utilisation/power/memory column; timeline skipped")
    gpu = gpu.sort_values(tcol)
    s = run["samples"]
    t0 = min(gpu[tcol].min(), s["start_ns"].min()) if not s.empty else gpu[tcol].min()
    spans = (s.groupby(["phase", "repeat", "tenant", "copy"]).agg(start=("start_ns", "min"), end=("end_ns", "max"))
             .reset_index() if not s.empty else pd.DataFrame())
    tenants = list(dict.fromkeys(f"{t}#{c}" for t, c in zip(spans.get("tenant", []), spans.get("copy", []))))
    colors = palette(tenants)
    with figure_style():
        fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(11, 1.9 * len(panels) + 0.35 * len(tenants) + 1.4),
                                 sharex=True, gridspec_kw={"height_ratios": [2] * len(panels) + [0.3 + 0.25 * len(tenants)]})
        x = (gpu[tcol] - t0) / 1e9
        for ax, (col, lab) in zip(axes, panels):
            y = pd.to_numeric(gpu[col], errors="coerce")
            if "mem" in col and y.max() > 4 * 2**20:  # bytes, not MiB
                y = y / 2**20
            ax.plot(x, y, lw=1, color="black")
            ax.set_ylabel(lab)
            for _, sp in spans[spans["phase"] == "shared"].iterrows() if not spans.empty else []:
                ax.axvspan((sp["start"] - t0) / 1e9, (sp["end"] - t0) / 1e9,
                           color=colors[f"{sp['tenant']}#{sp['copy']}"], alpha=0.08, lw=0)
        lanes = axes[-1]
        for i, tk in enumerate(tenants):
            for _, sp in spans[[f"{t}#{c}" == tk for t, c in zip(spans["tenant"], spans["copy"])]].iterrows():
                lanes.broken_barh([((sp["start"] - t0) / 1e9, (sp["end"] - sp["start"]) / 1e9)], (i - 0.4, 0.8),
                                  color=colors[tk], alpha=0.9 if sp["phase"] == "shared" else 0.45)
        lanes.set_yticks(range(len(tenants)), tenants)
        lanes.set_ylim(len(tenants) - 0.5, -0.5)
        lanes.set_xlabel("time since the run's first sample (s)")
        lanes.set_title("measured windows per tenant (pale: solo phase, dark: shared phase)", fontsize="small",
                        loc="left")
        fig.tight_layout()
        file = save_png(fig, out, f"timeline-{slug(run['id'])}.png")
    return figure(fid, title, "NVML samples over the run; shaded: each tenant's measured span in the shared "
                  "phase (lanes below show every tenant's solo and shared spans).", file)


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in df.columns and pd.to_numeric(df[n], errors="coerce").notna().any():
            return n
    return None
