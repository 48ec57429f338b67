"""Synthetic run directories in the results contract's shape (schema 2, or the old schema 1), for
the report's tests: no timing, no real run. Per-repeat slowdowns are given; every other number
(STP, intervals, verdicts) follows from them through tenancy.analysis.stats, as the runner's would."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tenancy.analysis import stats

KIND = {"bert-base": "forward", "deberta-v3-base": "forward", "distilgpt2": "generate", "llama-3.2-1b": "generate",
        "mistral-7b": "generate"}
SOLO_MS = {"bert-base": 5.0, "deberta-v3-base": 8.0, "distilgpt2": 20.0, "llama-3.2-1b": 40.0, "mistral-7b": 60.0}
N = 12  # samples per launch


def config(model: str) -> str:
    c = f"{model}/{KIND[model]}/b8/s128/float32/tiny"
    return c + "/t8" if KIND[model] == "generate" else c


def write_run(path: Path, name: str, tenants: list[tuple[str, str, int]], slowdowns: dict[str, list[float]],
              sharing: str = "timeslice", schema: int = 2, solo_noise: float = 0.01, cpu_count: int = 4,
              threads: int = 1, device: str = "cpu") -> Path:
    """One run directory. tenants: (name, model, copies); slowdowns: 'tenant#copy' -> per repeat."""
    path.mkdir(parents=True, exist_ok=True)
    repeats = len(next(iter(slowdowns.values())))
    model_of = {t: m for t, m, _ in tenants}
    keys = [f"{t}#{c}" for t, _, n in tenants for c in range(n)]
    solo_means = {t: [SOLO_MS[m] * (1 + solo_noise * ((r % 3) - 1)) for r in range(repeats)] for t, m, _ in tenants}
    samples, summary = [], []
    t0 = 0
    for r in range(repeats):
        for phase in ("solo", "shared"):
            for k in keys:
                t, c = k.split("#")
                if phase == "solo" and c != "0":
                    continue
                mean = solo_means[t][r] * (slowdowns[k][r] if phase == "shared" else 1.0)
                lat = mean * (1 + 0.02 * np.sin(np.arange(N)))
                start = t0 + np.cumsum(np.r_[0, lat[:-1]] * 1e6).astype("int64")
                m = model_of[t]
                samples.append(pd.DataFrame({
                    "phase": phase, "repeat": r, "tenant": t, "copy": int(c), "iteration": np.arange(N),
                    "start_ns": start, "end_ns": start + (lat * 1e6).astype("int64"), "latency_ms": lat,
                    "in_window": True, "model": m, "task": KIND[m], "config": config(m), "sharing": sharing,
                    "device": device}))
            t0 += 10**9
    s = pd.concat(samples, ignore_index=True)
    ct_values = {}
    for (phase, t, c), g in s.groupby(["phase", "tenant", "copy"], sort=False):
        m = model_of[t]
        row = {"phase": phase, "tenant": t, "copy": c, "model": m, "task": KIND[m], "config": config(m),
               "n": len(g), "mean_ms": g["latency_ms"].mean(), "p50_ms": g["latency_ms"].median(),
               "p90_ms": np.nan, "p99_ms": np.nan, "std_ms": g["latency_ms"].std(), "cv": 0.02,
               "iqr_over_median": 0.02, "items_per_s": 8000 / g["latency_ms"].mean()}
        if schema >= 2:
            row["n_repeats"] = repeats
        if phase == "shared":
            k = f"{t}#{c}"
            if schema >= 2:
                p, lo, hi = _interval(slowdowns[k])
                floor = stats.noise_floor(solo_means[t])
                row.update(slowdown=p, slowdown_ci_low=lo, slowdown_ci_high=hi,
                           verdict=stats.verdict(p, lo, hi, floor), noise_floor=floor)
                ct_values[k] = (p, lo, hi, row["verdict"])
            else:
                row["slowdown"] = g["latency_ms"].mean() / s[(s["phase"] == "solo") & (s["tenant"] == t)][
                    "latency_ms"].mean()
        summary.append(row)
    s.to_parquet(path / "samples.parquet")
    pd.DataFrame(summary).to_csv(path / "summary.csv", index=False)
    scen = {"name": name, "device": device, "sharing": sharing, "iterations": N, "warmup": 1, "repeats": repeats,
            "seed": 0, "tenants": [{"name": t, "model": m, "task": KIND[m], "batch": 8, "seq": 128,
                                    "dtype": "float32", "copies": n, "new_tokens": 8, "size": "tiny"}
                                   for t, m, n in tenants]}
    manifest = {"schema_version": schema, "status": "complete", "scenario": scen, "threads_per_tenant": threads,
                "environment": {"host": "synthetic", "cpu": "Synthetic CPU", "cpu_count": cpu_count}, "warnings": []}
    (path / "manifest.json").write_text(json.dumps(manifest))
    per_repeat = [{"repeat": r, "order": "solo-first", **stats.colocation([slowdowns[k][r] for k in keys]),
                   "slowdown": {k: slowdowns[k][r] for k in keys}} for r in range(repeats)]
    metrics: dict = {"n_tenants": len(keys), "serving": [], "gpu": [], "warnings": []}
    if schema >= 2:
        metrics.update(n_repeats=repeats, ci_basis="repeats" if repeats >= 3 else "within-run",
                       ci_method="student-t over repeats", level=0.95, per_repeat=per_repeat)
        for m in ("stp", "antt", "fairness", "min_max_fairness"):
            p, lo, hi = _interval([pr[m] for pr in per_repeat])
            metrics[m], metrics[f"{m}_ci"] = p, [lo, hi]
        metrics["per_tenant"] = [{"tenant": k.split("#")[0], "copy": int(k.split("#")[1]), "slowdown": v[0],
                                  "slowdown_ci": [v[1], v[2]], "verdict": v[3], "normalised_progress": 1 / v[0]}
                                 for k, v in ct_values.items()]
        metrics["noise"] = [{"tenant": t, "config": config(m), "solo_means_ms": solo_means[t],
                             "cv": 0.01, "noise_floor": stats.noise_floor(solo_means[t])} for t, m, _ in tenants]
    else:
        slow = summary_slowdowns = {f"{r['tenant']}#{r['copy']}": r["slowdown"] for r in summary
                                    if r["phase"] == "shared"}
        metrics.update({k: v for k, v in stats.colocation(list(slow.values())).items() if k != "min_max_fairness"})
        metrics["per_tenant"] = [{"tenant": k.split("#")[0], "copy": int(k.split("#")[1]), "slowdown": v,
                                  "normalised_progress": 1 / v} for k, v in summary_slowdowns.items()]
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def _interval(values: list[float]) -> tuple[float, float, float]:
    """The runner's rule: t across repeats from 3, else a stand-in for the within-run bootstrap."""
    if len(values) >= 3:
        return stats.t_interval(values)
    m = float(np.mean(values))
    return m, m - 0.02, m + 0.02
