"""The roofline figure and the predicted-against-measured figure (tables from report/roofline.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tenancy.report.load import model_order
from tenancy.report.plotting import figure, figure_style, intervals_caption, palette, save_png


def _peaks_note(df: pd.DataFrame) -> str:
    sources = sorted(set(df["peaks"]))
    return "Peaks: " + "; ".join(sources) + "." if sources else ""


def roofline_plot(table: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Achieved FLOP/s against arithmetic intensity, one panel per device and dtype peaks, with the
    roof min(peak FLOP/s, intensity x peak bytes/s)."""
    title = "Roofline: every tenant alone and shared"
    if table.empty:
        return figure("roofline", title, "", note="no run has peaks (measured or measurable here) and a closed-loop "
                      "tenant")
    devices = list(dict.fromkeys(zip(table["device"], table["peak_gflops"].round(1), table["peak_gbps"].round(1))))
    models = model_order(table["model"])
    colors = palette(models)
    with figure_style():
        fig, axes = plt.subplots(1, len(devices), figsize=(7 * len(devices), 5.2), squeeze=False)
        for ax, (dev, pf, pb) in zip(axes[0], devices):
            d = table[(table["device"] == dev) & (table["peak_gflops"].round(1) == pf)
                      & (table["peak_gbps"].round(1) == pb)]
            lo, hi = min(d["intensity"].min(), pf / pb) / 4, max(d["intensity"].max(), pf / pb) * 4
            x = np.geomspace(lo, hi, 200)
            ax.plot(x, np.minimum(pf, x * pb), color="black", lw=1.5, label=f"roof: {pf:,.0f} GFLOP/s, {pb:,.1f} GB/s")
            ax.axvline(pf / pb, color="grey", ls=":", lw=1, label=f"ridge {pf / pb:.1f} FLOP/B")
            for model in models:
                for phase, marker, fill in (("solo", "o", True), ("shared", "s", False)):
                    g = d[(d["model"] == model) & (d["phase"] == phase)]
                    if g.empty:
                        continue
                    ax.scatter(g["intensity"], g["achieved_gflops"], marker=marker, s=36, alpha=0.8,
                               facecolors=colors[model] if fill else "none", edgecolors=colors[model],
                               label=f"{model}, {'alone' if phase == 'solo' else 'shared'}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("arithmetic intensity (FLOP / byte of the step)")
            ax.set_ylabel("achieved GFLOP/s (step FLOPs / mean latency)")
            ax.set_title(str(dev), fontsize="medium")
            ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.tight_layout()
        file = save_png(fig, out, "roofline.png")
    above = int((table["mfu"] > 1).sum() + (table["mbu"] > 1).sum())
    warn = (f" {above} dot(s) lie above the roof: the peaks are too low (measured on a busy host? see "
            "`load_avg_1m` in manifest.json `peaks`) or the timing is wrong." if above else "")
    cols = ["run", "phase", "tenant", "copy", "model", "task", "gflop", "mbyte", "intensity", "achieved_gflops",
            "mean_ms", "floor_ms", "bound", "mfu", "mbu", "peak_gflops", "peak_gbps", "peaks"]
    return figure("roofline", title,
                  "Each dot is one tenant copy of one run: its step's FLOPs over its bytes (the model config's "
                  "formulas, tenancy/analysis/roofline.py) against the FLOP/s its mean latency achieved; filled: alone, "
                  "hollow: shared. The black roof is what the measured peaks allow (a GEMM for FLOP/s, a copy for "
                  "bytes/s); the distance below it is time the roofline does not explain. A dot above the roof "
                  "would be a measurement error. No intervals: each dot is a mean latency (the per-tenant table has "
                  "them). " + _peaks_note(table) + warn, file, table[cols])


def prediction_plot(pred: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Predicted against measured slowdown for every shared tenant copy, with its interval."""
    title = "Predicted against measured slowdown"
    if pred.empty:
        return figure("prediction", title, "", note="no tenant set with peaks and solo latencies to predict from")
    models = model_order(pred["model"])
    colors = palette(models)
    with figure_style():
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        top = float(np.nanmax(np.r_[pred["predicted"], pred["hi"].fillna(0), pred["measured"]])) * 1.1
        ax.plot([0.5, top], [0.5, top], color="grey", ls="--", lw=1, label="prediction = measurement")
        for model in models:
            g = pred[pred["model"] == model]
            err = np.nan_to_num(np.vstack([g["measured"] - g["lo"], g["hi"] - g["measured"]]).clip(min=0))
            ax.errorbar(g["predicted"], g["measured"], yerr=err, fmt="o", color=colors[model], capsize=3, ms=5,
                        label=model)
        ax.set_xlabel("predicted slowdown (solo demands, shared resources)")
        ax.set_ylabel("measured slowdown (× alone, 95% interval)")
        ax.set_xlim(0.5, top)
        ax.set_ylim(0.5, top)
        ax.legend(fontsize="x-small")
        fig.tight_layout()
        file = save_png(fig, out, "prediction.png")
    explained = pred["explained"].dropna()
    summary = (f" {int(explained.sum())} of {len(explained)} tenant copies have the prediction inside their measured "
               f"interval; median |error| {pred['error'].abs().median():.0%}." if len(explained) else "")
    return figure("prediction", title,
                  "Each tenant's demand alone (compute: its FLOP/s over the peak; memory: its bytes/s over the peak; "
                  "slots: on a CPU its threads over the cores, on a GPU under time-slicing the whole GPU) predicts "
                  "its slowdown next to its neighbours: a resource whose summed demand exceeds 1 slows every tenant "
                  "using it by that sum (tenancy/analysis/predict.py). error = predicted / measured - 1; explained = the "
                  "prediction lies inside the measured interval. Where it does not, the interference is something "
                  "the roofline does not model (scheduling, caches, the host)." + summary + intervals_caption(pred) + " "
                  + _peaks_note(pred),
                  file, pred)
