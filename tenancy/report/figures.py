"""The report's figures: one function per figure, tidy tables in, a PNG and its caption out.

Every function returns a `Figure` record; when its data is missing the record carries a note
instead of a file, so a study without pairs (say) still gets a report. Figures are drawn with
seaborn on the Agg backend, the colour-blind palette, units on every axis, and print-sized fonts;
styles are applied per figure (context managers), never globally.
"""
from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tenancy.report.load import CATEGORIES, model_order  # noqa: E402

DPI = 150
PALETTE = "colorblind"
MAX_TIMELINES = 12
TIME_COLUMNS = ("time_ns", "t_ns", "host_ns", "timestamp_ns", "perf_counter_ns")


def figure(fid: str, title: str, caption: str, file: str | None = None, table: pd.DataFrame | None = None,
           note: str = "") -> dict[str, Any]:
    """A figure record (plain data): file is relative to the report directory, None when skipped."""
    return {"id": fid, "title": title, "caption": caption, "file": file, "table": table, "note": note}


@contextmanager
def _style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.25):
        yield


def _save(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f"{out.name}/{name}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


def _colors(keys: list[str]) -> dict[str, Any]:
    return dict(zip(keys, sns.color_palette(PALETTE, max(len(keys), 1))))


def _modes(df: pd.DataFrame) -> list[str]:
    order = ["timeslice", "mps", "streams"]
    present = list(dict.fromkeys(df["sharing"]))
    return [m for m in order if m in present] + [m for m in present if m not in order]


# --- latency distributions -------------------------------------------------------------------

def latency_distributions(samples: pd.DataFrame, out: Path) -> list[dict[str, Any]]:
    """Per sharing mode: each model's in-window latency alone and next to each tenant set."""
    title = "Latency distributions, alone against shared"
    if samples.empty or not (samples["phase"] == "shared").any():
        return [figure("latency", title, "", note="no shared phase in these runs: nothing to compare with")]
    figs = []
    shared = samples[samples["phase"] == "shared"]
    for mode in _modes(shared):
        sub = shared[shared["sharing"] == mode]
        configs = [c for c in _config_order(sub) if c in set(sub["config"])]
        # the baseline is the solo phases of these same runs, as in their slowdowns
        alone = samples[(samples["phase"] == "solo") & (samples["sharing"] == mode) & samples["config"].isin(configs)]
        data = pd.concat([alone, sub], ignore_index=True)
        ncols = min(3, len(configs))
        nrows = -(-len(configs) // ncols)
        widths = [max(4.0, 0.55 * data[data["config"] == c]["context"].nunique()) for c in configs]
        with _style():
            fig, axes = plt.subplots(nrows, ncols, figsize=(max(widths) * ncols + 1, 3.9 * nrows), squeeze=False)
            colors = _colors(["alone", "shared"])
            for ax, c in zip(axes.flat, configs):
                d = data[data["config"] == c]
                order = ["alone"] + sorted(set(d["context"]) - {"alone"}, key=lambda s: (s.count("+"), s))
                d = d.assign(where=np.where(d["context"] == "alone", "alone", "shared"))
                sns.boxplot(data=d, x="context", y="latency_ms", hue="where", order=order, palette=colors,
                            hue_order=["alone", "shared"], ax=ax, fliersize=1.5, linewidth=0.9, legend=False,
                            dodge=False)
                ax.set_title(_config_title(c), fontsize="medium")
                ax.set_xlabel("co-located with (tenant set)")
                ax.set_ylabel("latency per iteration (ms)")
                ax.tick_params(axis="x", rotation=45)
                for lab in ax.get_xticklabels():
                    lab.set_horizontalalignment("right")
                top = d.groupby("context")["latency_ms"].quantile(0.99).max()
                ax.set_ylim(0, top * 1.1)  # rare stalls would squash the boxes; p99 is in the tables
            for ax in list(axes.flat)[len(configs):]:
                ax.set_visible(False)
            handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in ("alone", "shared")]
            fig.legend(handles, ["alone (solo phase)", f"shared ({mode})"], loc="upper center", ncols=2,
                       bbox_to_anchor=(0.5, 1.02), frameon=False)
            fig.tight_layout(rect=(0, 0, 1, 0.97))
            file = _save(fig, out, f"latency-{_slug(mode)}.png")
        figs.append(figure(f"latency-{mode}", f"{title} ({mode})",
                           f"In-window latency of each tenant's iterations: alone (the solo phases of the {mode} "
                           f"runs, pooled) and in each co-located tenant set under {mode}. Boxes: quartiles; "
                           "whiskers: 1.5 IQR; the axis stops just above the largest p99 (rarer stalls are "
                           "not drawn).", file))
    return figs


def _config_order(df: pd.DataFrame) -> list[str]:
    zoo = model_order()
    first = df.groupby("config")["model"].first()
    return sorted(first.index, key=lambda c: (zoo.index(first[c]) if first[c] in zoo else 99, c))


def _config_title(config: str) -> str:
    """bert-base/forward/b8/s128/float32/tiny -> two lines: the model, then the work."""
    parts = config.split("/")
    return f"{parts[0]}\n{' '.join(parts[1:])}" if len(parts) > 1 else config


# --- pair interference matrix ----------------------------------------------------------------

def pair_matrix(pairs: pd.DataFrame, out: Path) -> dict[str, Any]:
    title = "Pair interference matrix"
    if pairs.empty:
        return figure("pairs", title, "", note="no runs of exactly two tenant processes: no pair matrix")
    modes = _modes(pairs)
    zoo = model_order()
    present = sorted(set(pairs["model"]) | set(pairs["with"]), key=lambda m: (zoo.index(m) if m in zoo else 99, m))
    mean = pairs.groupby(["sharing", "model", "with"])["slowdown"].mean()
    vmax = max(1.05, float(np.nanmax(pairs["slowdown"])))
    n = len(present)
    with _style():
        fig, axes = plt.subplots(1, len(modes), figsize=(1.0 * n * len(modes) + 2.5 * len(modes), 0.9 * n + 2),
                                 squeeze=False)
        for ax, mode in zip(axes[0], modes):
            grid = mean.loc[mode].unstack("with").reindex(index=present, columns=present)
            annot = grid.map(lambda v: "" if pd.isna(v) else f"{v:.2f}×")
            sns.heatmap(grid, ax=ax, annot=annot, fmt="", cmap="cividis", vmin=1.0, vmax=vmax, linewidths=0.5,
                        linecolor="white", square=True, cbar_kws={"label": "slowdown (shared / alone latency)",
                                                                   "shrink": 0.8})
            ax.set_facecolor("#eeeeee")
            ax.grid(False)
            ax.set_title(f"{mode}", fontsize="large")
            ax.set_ylabel("slowdown of this model")
            ax.set_xlabel("co-located with")
            ax.tick_params(axis="x", rotation=35)
            ax.tick_params(axis="y", rotation=0)
        fig.tight_layout()
        file = _save(fig, out, "pairs.png")
    table = pairs.pivot_table(index=["sharing", "model"], columns="with", values="slowdown").reset_index()
    return figure("pairs", title, "Mean latency of the row model when co-located with the column model, divided "
                  "by its latency alone (1.00× = no interference). A model with itself is two copies of it. "
                  "Grey cells: pair not measured.", file, table)


# --- STP, ANTT, fairness per group ----------------------------------------------------------

def colocation_metrics(coloc: pd.DataFrame, out: Path) -> dict[str, Any]:
    title = "System throughput, turnaround and fairness per group"
    groups = coloc[coloc["kind"] == "group"] if not coloc.empty else coloc
    if groups.empty:
        return figure("groups", title, "", note="no group runs (three or more processes of two or more models)")
    groups = groups.assign(cat_order=groups["category"].map({c: i for i, c in enumerate(CATEGORIES)}))
    groups = groups.sort_values(["cat_order", "processes", "label"])
    rows = list(dict.fromkeys(f"[{c}] {lab}" for c, lab in zip(groups["category"], groups["label"])))
    groups = groups.assign(row=[f"[{c}] {lab}" for c, lab in zip(groups["category"], groups["label"])])
    modes = _modes(groups)
    colors = _colors(modes)
    metrics = [("stp", "STP (sum of normalised progress)"), ("antt", "ANTT (mean slowdown)"),
               ("fairness", "Jain fairness (1 = fair)")]
    h = 0.8 / len(modes)
    with _style():
        fig, axes = plt.subplots(1, 3, figsize=(15, 1.0 + 0.32 * len(rows) * len(modes) + 0.6), sharey=True)
        for ax, (m, label) in zip(axes, metrics):
            for j, mode in enumerate(modes):
                g = groups[groups["sharing"] == mode].set_index("row")
                y = np.array([rows.index(r) for r in g.index]) - 0.4 + h * (j + 0.5)
                err = np.vstack([g[m] - g[f"{m}_lo"], g[f"{m}_hi"] - g[m]]).clip(min=0)
                ax.barh(y, g[m], height=h * 0.9, color=colors[mode], label=mode,
                        xerr=np.nan_to_num(err), error_kw={"elinewidth": 1, "capsize": 2})
                if m == "stp":
                    ax.scatter(g["n_tenants"], y, marker="|", color="black", s=60, zorder=3,
                               label="ideal (n processes)" if j == 0 else None)
            ax.axvline(1.0, color="grey", lw=1, ls="--")
            ax.set_xlabel(label)
            ax.set_yticks(range(len(rows)), rows)
            ax.invert_yaxis() if ax is axes[0] else None
        handles, labels = axes[0].get_legend_handles_labels()
        fig.suptitle("per group and sharing mode, with 95% bootstrap intervals", fontsize="medium")
        fig.tight_layout()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=len(labels), frameon=False)
        file = _save(fig, out, "groups.png")
    cols = ["category", "label", "sharing", "processes", "stp", "stp_lo", "stp_hi", "antt", "antt_lo", "antt_hi",
            "fairness", "fairness_lo", "fairness_hi"]
    return figure("groups", title, "STP = sum of normalised progress (1: no better than running one after "
                  "another; n: no interference, marked |), ANTT = mean slowdown (1 = none), Jain fairness over "
                  "normalised progress. Whiskers: 95% bootstrap intervals over the in-window samples.", file,
                  groups[cols])


# --- scaling ----------------------------------------------------------------------------------

def scaling_curves(scal: pd.DataFrame, out: Path) -> dict[str, Any]:
    title = "Scaling with the number of processes"
    counts = scal.groupby("model")["processes"].nunique() if not scal.empty else pd.Series(dtype=int)
    if (counts < 2).all():
        return figure("scaling", title, "", note="no model was run as copies of itself at two or more counts")
    zoo = model_order()
    mdl = sorted(counts[counts >= 2].index, key=lambda m: zoo.index(m) if m in zoo else 99)
    modes = _modes(scal)
    colors = _colors(modes)
    with _style():
        fig, axes = plt.subplots(len(mdl), 2, figsize=(11, 3.6 * len(mdl)), squeeze=False)
        for row, model in zip(axes, mdl):
            d = scal[scal["model"] == model]
            for mode in modes:
                g = d[d["sharing"] == mode].sort_values("processes")
                m = g.groupby("processes").agg(lat=("latency_ms", "mean"), lo=("latency_min_ms", "min"),
                                               hi=("latency_max_ms", "max"), tp=("throughput", "mean"))
                row[0].plot(m.index, m["lat"], "-", color=colors[mode], label=mode)  # mean over runs
                row[0].scatter(g["processes"], g["latency_ms"], color=colors[mode], s=18, zorder=3)  # each run
                row[0].fill_between(m.index, m["lo"], m["hi"], color=colors[mode], alpha=0.2, lw=0)
                row[1].plot(m.index, m["tp"], "-", color=colors[mode], label=mode)
                row[1].scatter(g["processes"], g["throughput"], color=colors[mode], s=18, zorder=3)
            counts = np.sort(d["processes"].unique())
            # each run's own solo phase (same threads per tenant as its shared phase) is its baseline
            base = d.groupby("processes").agg(lat=("solo_latency_ms", "mean"), tp=("solo_throughput", "mean"))
            row[0].plot(base.index, base["lat"], ls="--", color="grey", lw=1, label="alone")
            row[1].plot(base.index, base.index * base["tp"], ls="--", color="grey", lw=1, label="ideal (n × alone)")
            row[0].set_ylabel("per-copy latency (ms)")
            row[1].set_ylabel("aggregate throughput (sequences/s)")
            for ax in row:
                ax.set_xscale("log", base=2)
                ax.set_xticks(counts, [str(c) for c in counts])
                ax.set_xlabel("processes (copies of the model)")
                ax.set_title(model, fontsize="medium")
                ax.set_ylim(bottom=0)
            row[0].legend(fontsize="small")
            row[1].legend(fontsize="small")
        fig.tight_layout()
        file = _save(fig, out, "scaling.png")
    return figure("scaling", title, "Mean latency per copy (band: fastest to slowest copy) and total sequences per "
                  "second of all copies against the number of copies (dots: each run, line: their mean, e.g. a "
                  "pair of one model and a scaling run of 2 copies); dashed: the runs' own solo phases, and n "
                  "times their throughput alone (perfect scaling).", file, scal.drop(columns=["study"]))


# --- sharing modes side by side -----------------------------------------------------------------

def sharing_side_by_side(sharing: pd.DataFrame, tenants: pd.DataFrame, out: Path) -> dict[str, Any]:
    title = "Sharing modes side by side"
    if sharing.empty:
        return figure("sharing", title, "", note="no run was measured under two or more sharing modes")
    modes = _modes(sharing)
    base, others = modes[0], modes[1:]
    wide = sharing.pivot_table(index=["study", "label", "kind"], columns="sharing",
                               values=["stp", "stp_lo", "stp_hi"]).reset_index()
    kinds = ["pair", "group", "scaling", "other"]
    colors = _colors(kinds)
    with _style():
        fig, axes = plt.subplots(1, len(others), figsize=(6.2 * len(others), 5.6), squeeze=False)
        for ax, other in zip(axes[0], others):
            for kind in kinds:
                w = wide[wide["kind"] == kind]
                if w.empty or ("stp", other) not in w.columns:
                    continue
                x, y = w[("stp", base)], w[("stp", other)]
                xerr = np.nan_to_num(np.vstack([x - w[("stp_lo", base)], w[("stp_hi", base)] - x]).clip(min=0))
                yerr = np.nan_to_num(np.vstack([y - w[("stp_lo", other)], w[("stp_hi", other)] - y]).clip(min=0))
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=colors[kind], label=kind, capsize=2,
                            elinewidth=0.8, ms=6)
                if len(wide) <= 16:
                    for lx, ly, lab in zip(x, y, w["label"]):
                        ax.annotate(lab, (lx, ly), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
            vals = wide[[("stp", m) for m in (base, other) if ("stp", m) in wide.columns]].to_numpy(dtype=float)
            lo, hi = np.nanmin(vals), np.nanmax(vals)
            pad = 0.08 * (hi - lo or 1)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", ls="--", lw=1, label="equal")
            ax.set_xlabel(f"STP under {base}")
            ax.set_ylabel(f"STP under {other}")
            ax.set_title(f"{other} against {base}: above the line, {other} does better", fontsize="medium")
            ax.legend(fontsize="small", title="run kind")
        fig.tight_layout()
        file = _save(fig, out, "sharing.png")
    cols = ["category", "label", "kind", "sharing", "processes", "stp", "stp_lo", "stp_hi", "antt", "fairness"]
    return figure("sharing", title, f"System throughput (STP) of the same tenant sets under each sharing mode "
                  f"against {base}, with 95% bootstrap intervals on both axes.", file, sharing[cols])


# --- GPU timeline -------------------------------------------------------------------------------

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
    fid = f"timeline-{run['name']}"
    title = f"GPU timeline: {run['name']}"
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
    colors = _colors(tenants)
    with _style():
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
        file = _save(fig, out, f"timeline-{_slug(run['name'])}.png")
    return figure(fid, title, "NVML samples over the run; shaded: each tenant's measured span in the shared "
                  "phase (lanes below show every tenant's solo and shared spans).", file)


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    for n in names:
        if n in df.columns and pd.to_numeric(df[n], errors="coerce").notna().any():
            return n
    return None


# --- comparison of two studies ----------------------------------------------------------------

def comparison(cmp: pd.DataFrame, label_a: str, label_b: str, out: Path) -> dict[str, Any]:
    title = f"Comparison: {label_a} against {label_b}"
    if cmp.empty:
        return figure("compare", title, "", note="the two inputs have no run and tenant in common (matched by run name)")
    sa, sb = f"slowdown [{label_a}]", f"slowdown [{label_b}]"
    ma, mb = f"mean_ms [{label_a}]", f"mean_ms [{label_b}]"
    shared = cmp[cmp["phase"] == "shared"].dropna(subset=[sa, sb])
    modes = list(dict.fromkeys(cmp["sharing"]))
    colors = _colors(modes)
    with _style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.4))
        ax = axes[0]
        for mode in modes:
            g = cmp[cmp["sharing"] == mode]
            ax.scatter(g[ma], g[mb], color=colors[mode], label=mode, s=22)
        lim = [float(np.nanmin(cmp[[ma, mb]].to_numpy())) * 0.8, float(np.nanmax(cmp[[ma, mb]].to_numpy())) * 1.25]
        ax.plot(lim, lim, "--", color="grey", lw=1, label="equal")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"mean latency, {label_a} (ms)")
        ax.set_ylabel(f"mean latency, {label_b} (ms)")
        ax.set_title("every tenant copy, solo and shared", fontsize="medium")
        ax.legend(fontsize="small")
        ax = axes[1]
        if shared.empty:
            ax.text(0.5, 0.5, "no shared tenants in common", ha="center", va="center", transform=ax.transAxes)
        for mode in modes:
            g = shared[shared["sharing"] == mode]
            if g.empty:
                continue
            xerr = np.nan_to_num(np.vstack([g[sa] - g[f"slowdown_lo [{label_a}]"],
                                            g[f"slowdown_hi [{label_a}]"] - g[sa]]).clip(min=0))
            yerr = np.nan_to_num(np.vstack([g[sb] - g[f"slowdown_lo [{label_b}]"],
                                            g[f"slowdown_hi [{label_b}]"] - g[sb]]).clip(min=0))
            ax.errorbar(g[sa], g[sb], xerr=xerr, yerr=yerr, fmt="o", color=colors[mode], label=mode, capsize=2,
                        elinewidth=0.8, ms=5)
        if not shared.empty:
            lo, hi = float(np.nanmin(shared[[sa, sb]].to_numpy())), float(np.nanmax(shared[[sa, sb]].to_numpy()))
            ax.plot([lo * 0.95, hi * 1.05], [lo * 0.95, hi * 1.05], "--", color="grey", lw=1, label="equal")
            ax.legend(fontsize="small")
        ax.set_xlabel(f"slowdown, {label_a}")
        ax.set_ylabel(f"slowdown, {label_b}")
        ax.set_title("shared tenants: slowdown against their own solo run", fontsize="medium")
        fig.tight_layout()
        file = _save(fig, out, "compare.png")
    return figure("compare", title, f"Runs matched by name, tenants by name and copy. Left: mean latency "
                  f"({label_b} against {label_a}, log scales). Right: slowdown with 95% bootstrap intervals; "
                  "points above the line interfere more in the second input.", file, cmp)


def records_json(figs: list[dict[str, Any]]) -> str:
    """The figure list without tables, for the report's index."""
    return json.dumps([{k: v for k, v in f.items() if k != "table"} for f in figs], indent=2)
