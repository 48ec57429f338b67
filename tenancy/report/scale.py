"""`tenancy report` on a `tenancy scale` directory: rate and replicas over time per policy,
latency over time against the SLO, and the efficiency / SLO table (real next to simulated)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from tenancy.core import results  # noqa: E402
from tenancy.report.plotting import figure, figure_style, save_png  # noqa: E402

COLUMNS = ["mode", "policy", "efficiency", "replica_seconds", "mean_replicas", "time_above_slo", "slo_attainment",
           "goodput", "p90_ttft_ms", "p90_e2e_ms", "scale_ups", "scale_downs", "cold_start_s", "peak_host_rss_mb",
           "status"]


def is_scale(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / results.MANIFEST).read_text()).get("kind") == "scale"
    except (OSError, ValueError, AttributeError):
        return False


def build(path: str | Path, out: Path) -> dict[str, Any]:
    """The report as plain data for render.write, figures written under out/figures."""
    from tenancy.autoscale.metrics import window_p90
    from tenancy.report.load import environments

    path = Path(path)
    m = json.loads((path / results.MANIFEST).read_text())
    ticks = _read(path / results.REPLICAS)
    req = _read(path / results.REQUESTS)
    summary = pd.read_csv(path / results.SUMMARY) if (path / results.SUMMARY).exists() else pd.DataFrame()
    slos = (((m.get("scenario") or {}).get("tenants") or [{}])[0].get("serving") or {}).get("slos") or {}
    window = (m.get("autoscale") or {}).get("slo_window_s", 5.0)
    figdir = out / "figures"
    figs = [_replicas(ticks, m, figdir)]
    real = ticks[ticks["mode"] == "real"] if "mode" in ticks else ticks.iloc[:0]
    if len(real) and len(req):
        lat = pd.concat([window_p90(real[real["policy"] == p], req[req["policy"] == p], window).assign(
            t_s=real.loc[real["policy"] == p, "t_s"], policy=p) for p in real["policy"].unique()])
        figs.append(_latency(lat, slos, window, figdir))
    else:
        figs.append(figure("scale_latency", "Latency over time", "", note="no real run in this directory"))
    table = summary[[c for c in COLUMNS if c in summary]] if len(summary) else summary
    table = summary[[c for c in COLUMNS if c in summary]] if len(summary) else summary
    figs.append(_summary(table, window, figdir))
    env = {**m, "id": path.name, "device": m.get("device")}
    status = m.get("status")
    return {"title": f"tenancy scale report: {path.name}", "inputs": [str(path)], "generated": results.utc_now(),
            "n_runs": 1, "environments": environments([{"manifest": env, "device": m.get("device"), "study": path.parent.name}]),
            "runs": pd.DataFrame([{"run": path.name, "kind": "scale", "status": status,
                                   "policies": ", ".join(p["policy"] for p in m.get("policies", []))}]),
            "findings": _findings(summary), "figures": figs,
            "notes": [] if status == "complete" else [f"status {status}: data shown as far as it goes"],
            "warnings": [], "tables": {"summary": table}}


def _read(p: Path) -> pd.DataFrame:
    return pd.read_parquet(p) if p.exists() else pd.DataFrame()


def _replicas(ticks: pd.DataFrame, m: dict, figdir: Path) -> dict[str, Any]:
    if ticks.empty:
        return figure("scale_replicas", "Rate and replicas over time", "", note="no ticks recorded")
    policies = list(dict.fromkeys(ticks["policy"]))
    with figure_style():
        fig, axes = plt.subplots(len(policies), 1, figsize=(9, 2.2 * len(policies)), sharex=True, squeeze=False)
        for ax, p in zip(axes[:, 0], policies):
            for mode, style in (("real", "-"), ("simulated", ":")):
                d = ticks[(ticks["policy"] == p) & (ticks["mode"] == mode)]
                if len(d):
                    ax.step(d["t_s"], d["provisioned"], style, where="post", color="C0", label=f"provisioned ({mode})")
                    if mode == "real":
                        ax.step(d["t_s"], d["ready"], "-", where="post", color="C2", alpha=0.7, label="ready")
            r = ticks[(ticks["policy"] == p) & (ticks["mode"] == "real")]
            r = r if len(r) else ticks[ticks["policy"] == p]
            twin = ax.twinx()
            twin.plot(r["t_s"], r["observed_rate"].rolling(4, min_periods=1).mean(), color="C3", alpha=0.6,
                      label="arrival rate")
            twin.set_ylabel("req/s")
            ax.set_ylabel("replicas")
            ax.set_title(p, fontsize=10, loc="left")
        axes[0, 0].legend(loc="upper left", fontsize=7)
        axes[-1, 0].set_xlabel("time since the trace started (s)")
        file = save_png(fig, figdir, "scale_replicas.png")
    return figure("scale_replicas", "Rate and replicas over time",
                  "Per policy: replicas provisioned (paid for: starting, ready and draining; solid measured, dotted "
                  "simulated), ready, and the observed arrival rate (right axis, 2 s mean).", file=file)


def _latency(lat: pd.DataFrame, slos: dict, window: float, figdir: Path) -> dict[str, Any]:
    with figure_style():
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
        for ax, col, slo in ((axes[0], "p90_ttft_ms", slos.get("ttft_ms")), (axes[1], "p90_e2e_ms", slos.get("e2e_ms"))):
            for p, d in lat.groupby("policy", sort=False):
                ax.plot(d["t_s"], d[col], label=p)
            if slo:
                ax.axhline(slo, color="k", ls="--", lw=1, label="SLO")
            ax.set_yscale("log")
            ax.set_ylabel(f"{col.replace('_ms', '')} (ms)")
            ax.set_xlabel("time (s)")
        axes[1].legend(fontsize=7)
        file = save_png(fig, figdir, "scale_latency.png")
    return figure("scale_latency", "Latency over time against the SLO",
                  f"Sliding-window ({window:g} s, by arrival) p90 TTFT and E2E of the measured runs; dashed: the SLO.",
                  file=file, table=lat.reset_index(drop=True))


def _summary(table: pd.DataFrame, window: float, figdir: Path) -> dict[str, Any]:
    if table.empty:
        return figure("scale_summary", "Efficiency and SLO per policy", "", note="no summary rows")
    with figure_style():
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
        for ax, col in zip(axes, ("efficiency", "time_above_slo", "slo_attainment")):
            wide = table.pivot_table(index="policy", columns="mode", values=col, sort=False)
            wide.plot.barh(ax=ax, legend=ax is axes[0])
            ax.set_xlim(0, 1.05)
            ax.set_xlabel(col)
        file = save_png(fig, figdir, "scale_summary.png")
    return figure("scale_summary", "Efficiency and SLO per policy",
                  "Efficiency: demand over the usable capacity of the replicas paid for (calibrated capacity at the "
                  "target utilisation), time-averaged; time_above_slo: share of decision ticks whose "
                  f"{window:g} s sliding-window p90 TTFT or E2E exceeds its SLO; slo_attainment: share of requests "
                  "within every SLO. 'simulated': the fluid model fitted by the calibration.", file=file, table=table)


def _findings(summary: pd.DataFrame) -> list[dict[str, str]]:
    out = []
    for r in summary.itertuples():
        out.append({"section": f"{r.mode} runs", "kind": "finding", "text":
                    f"{r.policy}: efficiency {r.efficiency:.0%}, {r.replica_seconds:.0f} replica-seconds, "
                    f"{r.time_above_slo:.0%} of the time above the SLO, {r.slo_attainment:.0%} of requests "
                    f"within it, {r.scale_ups} scale-ups / {r.scale_downs} scale-downs"})
    return out
