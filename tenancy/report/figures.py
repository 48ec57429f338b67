"""The report's figures: one function per figure, tidy tables in, a PNG and its caption out.

Every function returns a figure record (report/plotting.py); when its data is missing the record
carries a note instead of a file, so a study without pairs (say) still gets a report. The GPU
timelines are in report/timeline_figures.py, the roofline's in report/roofline_figures.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tenancy.report.load import CATEGORIES, model_order  # noqa: E402
from tenancy.report.plotting import figure, figure_style, intervals_caption, mode_order, palette, save_png, slug  # noqa: E402

# --- latency distributions -------------------------------------------------------------------

def latency_distributions(samples: pd.DataFrame, out: Path) -> list[dict[str, Any]]:
    """Per sharing mode: each model's in-window latency alone and next to each tenant set."""
    title = "Latency distributions, alone against shared"
    if samples.empty or not (samples["phase"] == "shared").any():
        return [figure("latency", title, "", note="no shared phase in these runs: nothing to compare with")]
    figs = []
    shared = samples[samples["phase"] == "shared"]
    for mode in mode_order(shared):
        sub = shared[shared["sharing"] == mode]
        configs = [c for c in _config_order(sub) if c in set(sub["config"])]
        # the baseline is the solo phases of these same runs, as in their slowdowns
        alone = samples[(samples["phase"] == "solo") & (samples["sharing"] == mode) & samples["config"].isin(configs)]
        data = pd.concat([alone, sub], ignore_index=True)
        ncols = min(3, len(configs))
        nrows = -(-len(configs) // ncols)
        widths = [max(4.0, 0.55 * data[data["config"] == c]["context"].nunique()) for c in configs]
        with figure_style():
            fig, axes = plt.subplots(nrows, ncols, figsize=(max(widths) * ncols + 1, 3.9 * nrows), squeeze=False)
            colors = palette(["alone", "shared"])
            for ax, c in zip(axes.flat, configs):
                d = data[data["config"] == c]
                order = ["alone"] + sorted(set(d["context"]) - {"alone"}, key=lambda s: (s.count("+"), s))
                n = d.groupby("context")["n"].first()
                d = d.assign(where=np.where(d["context"] == "alone", "alone", "shared"))
                sns.boxplot(data=d, x="context", y="latency_ms", hue="where", order=order, palette=colors,
                            hue_order=["alone", "shared"], ax=ax, fliersize=1.5, linewidth=0.9, legend=False,
                            dodge=False)
                ax.set_title(_config_title(c), fontsize="medium")
                ax.set_xlabel("co-located with (tenant set)")
                ax.set_ylabel("latency per iteration (ms)")
                ax.set_xticks(range(len(order)), [f"{o} (n={n[o]})" for o in order])
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
            file = save_png(fig, out, f"latency-{slug(mode)}.png")
        figs.append(figure(f"latency-{mode}", f"{title} ({mode})",
                           f"In-window latency of each tenant's iterations: alone (the solo phases of the {mode} "
                           f"runs, pooled over repeats and run directories) and in each co-located tenant set under {mode}; n is "
                           "the number of in-window iterations behind each box. Boxes: quartiles; whiskers: 1.5 "
                           "IQR; the axis stops just above the largest p99 (rarer stalls are not drawn). No "
                           "interval is drawn: the spread is that of single iterations.", file))
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

def _diverging_norm(values: np.ndarray) -> matplotlib.colors.Normalize:
    """Centred on 1 on a log scale, symmetric, so 1.25× and 0.8× get colours of equal strength."""
    v = values[np.isfinite(values) & (values > 0)]
    span = max(float(np.max(np.abs(np.log(v)))) if len(v) else 0.0, np.log(1.05))
    return matplotlib.colors.LogNorm(vmin=np.exp(-span), vmax=np.exp(span))


def pair_matrix(matrix: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Row model's slowdown next to the column model, per sharing mode, interval in every cell."""
    title = "Pair interference matrix"
    if matrix.empty:
        return figure("pairs", title, "", note="no runs of exactly two tenant processes: no pair matrix")
    modes = mode_order(matrix)
    zoo = model_order()
    present = sorted(set(matrix["model"]) | set(matrix["with"]), key=lambda m: (zoo.index(m) if m in zoo else 99, m))
    norm = _diverging_norm(np.concatenate([matrix[c].to_numpy(dtype=float) for c in ("slowdown", "lo", "hi")]))
    n = len(present)
    with figure_style():
        fig, axes = plt.subplots(1, len(modes), figsize=(1.75 * n * len(modes) + 2.8 * len(modes), 1.25 * n + 2.2),
                                 squeeze=False)
        for ax, mode in zip(axes[0], modes):
            m = matrix[matrix["sharing"] == mode].set_index(["model", "with"])
            grid = m["slowdown"].unstack("with").reindex(index=present, columns=present).astype(float)
            img = ax.imshow(np.ma.masked_invalid(grid.to_numpy()), cmap="RdBu_r", norm=norm)
            ax.set_facecolor("#c8c8c8")
            for i, row in enumerate(present):
                for j, col in enumerate(present):
                    if (row, col) not in m.index:
                        ax.text(j, i, "not\nmeasured", ha="center", va="center", fontsize="x-small", color="#555555")
                        continue
                    c = m.loc[(row, col)]
                    inc = c["includes_one"]
                    if pd.isna(inc) or inc:  # no effect shown: hatch the cell, mark the value with ≈
                        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///",
                                                   edgecolor="#777777", lw=0))
                    mark = "≈" if (not pd.isna(inc) and inc) else ""
                    band = (f"[{c['lo']:.2f}, {c['hi']:.2f}]" if np.isfinite(c["lo"]) and np.isfinite(c["hi"])
                            else "no interval")
                    strong = abs(np.log(c["slowdown"])) > 0.6 * np.log(norm.vmax)
                    ax.text(j, i, f"{mark}{c['slowdown']:.2f}×\n{band}", ha="center", va="center",
                            fontsize="small", color="white" if strong else "black",
                            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "alpha": 0.0 if strong else 0.55,
                                  "lw": 0})
            ax.set_xticks(range(n), present, rotation=35, ha="right")
            ax.set_yticks(range(n), present)
            ax.grid(False)
            ax.set_title(mode, fontsize="large")
            ax.set_ylabel("slowdown of this model")
            ax.set_xlabel("co-located with")
            cb = fig.colorbar(img, ax=ax, shrink=0.8, label="slowdown (shared / alone latency)")
            ticks: list[float] = []
            for t in (1.0, 1.1, 0.9, 1.25, 0.8, 1.5, 0.67, 2, 0.5, 3, 0.33, 4, 0.25):  # spaced on the log axis
                if norm.vmin <= t <= norm.vmax and all(abs(np.log(t / u)) > 0.12 * np.log(norm.vmax) for u in ticks):
                    ticks.append(t)
            ticks.sort()
            cb.set_ticks(ticks, labels=[f"{t:g}×" for t in ticks])
            cb.minorticks_off()
        fig.tight_layout()
        file = save_png(fig, out, "pairs.png")
    return figure("pairs", title, "Mean latency of the row model next to the column model, divided by its latency "
                  "alone (1.00× = no interference; red: slower, blue: faster). Each cell prints its interval; "
                  "hatched cells marked ≈ have an interval that includes 1 (hatched without ≈: no interval): "
                  "no interference shown. A model with itself is two copies of it; where a cell holds two tenant "
                  "copies (or one pair in two configurations) it shows their mean and an interval spanning all of "
                  "theirs. Dark grey: pair not measured." + intervals_caption(matrix),
                  file, matrix)


# --- STP, ANTT, fairness per group ----------------------------------------------------------

def colocation_metrics(cells: pd.DataFrame, out: Path) -> dict[str, Any]:
    """STP, ANTT, Jain and min/max fairness of every group, per sharing mode, with intervals."""
    title = "System throughput, turnaround and fairness per group"
    groups = cells[cells["is_group"]] if not cells.empty else cells
    if groups.empty:
        return figure("groups", title, "", note="no group runs (three or more processes of two or more models)")
    groups = groups.assign(cat_order=groups["category"].map({c: i for i, c in enumerate(CATEGORIES)}))
    groups = groups.sort_values(["cat_order", "processes", "label"])
    groups = groups.assign(row=[f"[{c}] {lab}" for c, lab in zip(groups["category"], groups["label"])])
    rows = list(dict.fromkeys(groups["row"]))
    modes = mode_order(groups)
    colors = palette(modes)
    metrics = [("stp", "STP (sum of normalised progress)"), ("antt", "ANTT (mean slowdown)"),
               ("fairness", "Jain fairness (1/n … 1)"), ("min_max_fairness", "min/max fairness (0 … 1)")]
    h = 0.8 / len(modes)
    with figure_style():
        fig, axes = plt.subplots(1, 4, figsize=(19, 1.0 + 0.32 * len(rows) * len(modes) + 0.6), sharey=True)
        for ax, (m, label) in zip(axes, metrics):
            for j, mode in enumerate(modes):
                g = groups[groups["sharing"] == mode].set_index("row")
                y = np.array([rows.index(r) for r in g.index]) - 0.4 + h * (j + 0.5)
                err = np.vstack([g[m] - g[f"{m}_lo"], g[f"{m}_hi"] - g[m]]).clip(min=0)
                left = (1.0 / g["n_tenants"]) if m == "fairness" else 0.0
                ax.barh(y, g[m] - left, left=left, height=h * 0.9, color=colors[mode], label=mode,
                        xerr=np.nan_to_num(err), error_kw={"elinewidth": 1, "capsize": 2})
                if m == "stp":
                    ax.scatter(g["n_tenants"], y, marker="|", color="black", s=60, zorder=3,
                               label="n tenants (no interference)" if j == 0 else None)
                if m == "fairness":
                    ax.scatter(1.0 / g["n_tenants"], y, marker="|", color="black", s=60, zorder=3,
                               label=None)
            if m in ("stp", "antt"):
                ax.axvline(1.0, color="grey", lw=1, ls="--")
            if m == "fairness":
                ax.set_xlim(float((1.0 / groups["n_tenants"]).min()) - 0.02, 1.02)
            if m == "min_max_fairness":
                ax.set_xlim(0, 1.02)
            ax.set_xlabel(label)
            ax.set_yticks(range(len(rows)), rows)
        axes[0].invert_yaxis()
        handles, labels = axes[0].get_legend_handles_labels()
        fig.suptitle("per group and sharing mode; Jain fairness bars start at each group's minimum 1/n (|)",
                     fontsize="medium")
        fig.tight_layout()
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=len(labels), frameon=False)
        file = save_png(fig, out, "groups.png")
    cols = ["category", "label", "sharing", "processes", "n_tenants"] + [
        f"{m}{s}" for m, _ in metrics for s in ("", "_lo", "_hi")] + ["basis", "n_repeats", "runs"]
    return figure("groups", title, "STP = sum of normalised progress (1: no better than running one after "
                  "another; n tenants: no interference, marked |), ANTT = mean slowdown (1 = none), Jain fairness "
                  "over normalised progress (1/n: one tenant gets everything, 1: equal), min/max fairness = "
                  "slowest tenant's progress over the fastest's. Whiskers: 95% intervals." +
                  intervals_caption(groups), file, groups[cols])


# --- scaling ----------------------------------------------------------------------------------

def scaling_curves(scal: pd.DataFrame, out: Path) -> dict[str, Any]:
    """Per model: per-copy slowdown and aggregate throughput against copies, with a reachable ideal."""
    title = "Scaling with the number of processes"
    counts = scal.groupby("model")["processes"].nunique() if not scal.empty else pd.Series(dtype=int)
    if (counts < 2).all():
        return figure("scaling", title, "", note="no model was run as copies of itself at two or more counts")
    zoo = model_order()
    mdl = sorted(counts[counts >= 2].index, key=lambda m: zoo.index(m) if m in zoo else 99)
    modes = mode_order(scal)
    colors = palette(modes)
    with figure_style():
        fig, axes = plt.subplots(len(mdl), 2, figsize=(11, 3.8 * len(mdl)), squeeze=False)
        for row, model in zip(axes, mdl):
            d = scal[scal["model"] == model]
            counts_m = np.sort(d["processes"].unique())
            for mode in modes:
                g = d[d["sharing"] == mode].sort_values("processes")
                if g.empty:
                    continue
                for ax, col in ((row[0], "slowdown"), (row[1], "stp")):
                    err = np.nan_to_num(np.vstack([g[col] - g[f"{col}_lo"], g[f"{col}_hi"] - g[col]]).clip(min=0))
                    ax.errorbar(g["processes"], g[col], yerr=err, fmt="o", color=colors[mode], capsize=3, ms=4)
                    mean = g.groupby("processes")[col].mean()  # several tenant sets of one count: their mean
                    ax.plot(mean.index, mean.to_numpy(), "-", color=colors[mode], lw=1.2, label=mode)
                ideal = g.groupby("processes")["ideal_stp"].max()
                row[1].plot(ideal.index, ideal.to_numpy(), ls="--", color=colors[mode], lw=1, alpha=0.8,
                            label=f"reachable ideal, {mode}")
            row[0].axhline(1.0, ls="--", color="grey", lw=1, label="alone")
            row[0].set_ylabel("per-copy slowdown (× alone)")
            row[1].set_ylabel("aggregate throughput (× one copy alone)")
            for ax in row:
                ax.set_xscale("log", base=2)
                ax.set_xticks(counts_m, [str(c) for c in counts_m])
                ax.minorticks_off()
                ax.set_xlabel("processes (copies of the model)")
                ax.set_title(model, fontsize="medium")
                ax.set_ylim(bottom=0)
                ax.legend(fontsize="x-small")
        fig.tight_layout()
        file = save_png(fig, out, "scaling.png")
    why = "; ".join(sorted({f"{m}: at most {c:g} at once ({w})" for m, c, w in
                            zip(scal["sharing"], scal["capacity"], scal["capacity_why"])}))
    return figure("scaling", title, "Dots: each tenant set of N copies (a pair of one model's copies counts), "
                  "line: their mean per count. Left: mean slowdown of the copies (ANTT). Right: aggregate "
                  "throughput of all "
                  "copies over one copy alone (= STP: the copies' normalised progress summed). Dashed: the ideal "
                  "this machine could reach, min(copies, how many copies it can run at full speed at once): "
                  f"{why}. Error bars: 95% intervals." + intervals_caption(scal), file, scal)


# --- sharing modes side by side -----------------------------------------------------------------

def sharing_side_by_side(sharing: pd.DataFrame, out: Path) -> dict[str, Any]:
    """STP of the same tenant sets under each mode against the base mode."""
    title = "Sharing modes side by side"
    if sharing.empty:
        return figure("sharing", title, "", note="no run was measured under two or more sharing modes")
    modes = mode_order(sharing)
    base, others = modes[0], modes[1:]
    wide = (sharing.set_index(["key", "label", "kind", "sharing"])[["stp", "stp_lo", "stp_hi"]]
            .unstack("sharing").reset_index())  # not pivot_table: it drops all-NaN interval columns
    kinds = ["control", "pair", "group", "scaling", "other"]
    colors = palette(kinds)
    with figure_style():
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
        file = save_png(fig, out, "sharing.png")
    cols = ["category", "label", "kind", "sharing", "processes", "stp", "stp_lo", "stp_hi", "antt", "antt_lo",
            "antt_hi", "fairness", "min_max_fairness", "basis", "n_repeats", "runs"]
    return figure("sharing", title, f"System throughput (STP) of the same tenant sets under each sharing mode "
                  f"against {base}, with 95% intervals on both axes." + intervals_caption(sharing), file,
                  sharing[cols])


# --- comparison of two or more studies ----------------------------------------------------------

def comparison(cmp: pd.DataFrame, labels: list[str], out: Path) -> dict[str, Any]:
    """Each input's slowdowns against the first input's, matched by scenario and tenant copy."""
    first, others = labels[0], labels[1:]
    title = f"Comparison: {', '.join(others)} against {first}"
    if cmp.empty:
        return figure("compare", title, "", note="the inputs have no shared tenant in common with the first "
                      "(matched by scenario name, tenant and copy)")
    keys = ["name", "sharing", "tenant", "copy"]
    base = cmp[cmp["input"] == first].set_index(keys)
    modes = list(dict.fromkeys(cmp["sharing"]))
    colors = palette(modes)
    with figure_style():
        fig, axes = plt.subplots(1, len(others), figsize=(6.0 * len(others), 5.4), squeeze=False)
        for ax, other in zip(axes[0], others):
            o = cmp[cmp["input"] == other].set_index(keys)
            both = o.merge(base, left_index=True, right_index=True, how="inner", suffixes=("", "_0"))
            if both.empty:
                ax.text(0.5, 0.5, "no shared tenant in common", ha="center", va="center", transform=ax.transAxes)
                continue
            for mode in modes:
                g = both[both.index.get_level_values("sharing") == mode]
                if g.empty:
                    continue
                xerr = np.nan_to_num(np.vstack([g["slowdown_0"] - g["lo_0"], g["hi_0"] - g["slowdown_0"]]).clip(min=0))
                yerr = np.nan_to_num(np.vstack([g["slowdown"] - g["lo"], g["hi"] - g["slowdown"]]).clip(min=0))
                ax.errorbar(g["slowdown_0"], g["slowdown"], xerr=xerr, yerr=yerr, fmt="o", color=colors[mode],
                            label=mode, capsize=2, elinewidth=0.8, ms=5)
            v = both[["slowdown", "slowdown_0"]].to_numpy(dtype=float)
            lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
            ax.plot([lo * 0.95, hi * 1.05], [lo * 0.95, hi * 1.05], "--", color="grey", lw=1, label="equal")
            ax.set_xlabel(f"slowdown, {first}")
            ax.set_ylabel(f"slowdown, {other}")
            ax.set_title(f"{other}\nagainst {first}", fontsize="medium")
            ax.legend(fontsize="small")
        fig.tight_layout()
        file = save_png(fig, out, "compare.png")
    return figure("compare", title, "Every shared tenant copy found in the first input and another, matched by "
                  "scenario name, tenant and copy: its slowdown (shared / its own solo latency) in each input "
                  "against the first; above the line it interferes more than in the first input. Error bars: 95% "
                  "intervals." + intervals_caption(cmp), file, cmp)
