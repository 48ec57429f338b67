"""`tenancy scale`: calibrate, run every policy on the same seeded trace (each in fresh replica
processes), replay them in the simulator, and write the scale directory after every step."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from tenancy.autoscale.capacity import Capacity, duration_s, rate_function
from tenancy.autoscale.config import AutoscaleConfig, check_scenario
from tenancy.autoscale.metrics import summarize
from tenancy.autoscale.policies.base import Context
from tenancy.autoscale.replica import ReplicaSpec
from tenancy.autoscale.simulate import ServiceModel, simulate
from tenancy.core import results
from tenancy.gpu import environment
from tenancy.serving.config import ServingConfig


def vocab_size(cfg: ServingConfig) -> int:
    from tenancy.models import zoo

    if cfg.weights in ("random", "pretrained"):
        return zoo.get(cfg.model).make_config(cfg.size).vocab_size
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(cfg.weights).vocab_size


@dataclass
class Study:
    """Everything one `tenancy scale` writes, kept in memory and rewritten atomically."""

    run_dir: Path
    manifest: dict[str, Any]
    ticks: list[pd.DataFrame] = field(default_factory=list)
    requests: list[pd.DataFrame] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)
    starts: list[pd.DataFrame] = field(default_factory=list)

    def write(self) -> None:
        d = self.run_dir
        cat = lambda frames: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()  # noqa: E731
        results.write_table(d / results.REPLICAS, cat(self.ticks))
        results.write_table(d / results.REQUESTS, cat(self.requests))
        results.write_table(d / results.REPLICA_STARTS, cat(self.starts))
        results.write_table(d / results.SUMMARY, pd.DataFrame(self.summary))
        results.write_json(d / results.MANIFEST, self.manifest)


def service_model(cfg: AutoscaleConfig, calibration: Optional[pd.DataFrame], low: dict) -> ServiceModel:
    """The fleet's capacity and latencies: the scenario's figures where given, else measured."""
    rps = cfg.capacity_rps or calibration["capacity_rps"].tolist()
    cap = Capacity(tuple(rps), cfg.min_replicas, cfg.max_replicas, cfg.target_utilization)
    e2e0 = cfg.base_latency_s or low["e2e0_s"]
    return ServiceModel(cap, cfg.base_ttft_s or low.get("ttft0_s", e2e0), e2e0,
                        cfg.cold_start_s if cfg.cold_start_s is not None else low["cold_start_s"])


def needs_calibration(cfg: AutoscaleConfig) -> bool:
    return cfg.capacity_rps is None or cfg.base_latency_s is None or cfg.cold_start_s is None


def run_study(scenario, run_dir: Path, manifest: dict, env: dict, simulate_only: bool = False,
              on_step: Callable[[str], None] = lambda text: None) -> Study:
    """The whole experiment; `env` is each replica's environment (sharing mode + GPU naming)."""
    from tenancy.serving import workload
    from tenancy.serving.tenant import config_for

    cfg = check_scenario(scenario)
    tenant = scenario.tenants[0]
    scfg = config_for(tenant, scenario.seed)
    w = scfg.workload
    specs = workload.generate(w, vocab_size(scfg))
    duration = duration_s(w) or max(s.arrival_s for s in specs)
    rate_fn = rate_function(w)
    threads = tenant.threads or max(1, environment.cpu_count() // cfg.max_replicas)
    serving = json.loads(scfg.model_dump_json())

    def make_spec(i: int) -> ReplicaSpec:
        return ReplicaSpec(i, cfg.replica, serving, scenario.device, threads, 0, dict(env),
                           cfg.sleep_service_s, cfg.sleep_slots)

    study = Study(run_dir, manifest)
    manifest.update(autoscale=json.loads(cfg.model_dump_json()), threads_per_replica=threads,
                    duration_s=duration, num_requests=len(specs), policies=[])
    calibration, low = _calibrate(cfg, make_spec, specs, study, on_step) if needs_calibration(cfg) else (None, {})
    model = service_model(cfg, calibration, low)
    manifest["service_model"] = {"capacity_rps": list(model.capacity.rps), "ttft0_s": model.ttft0_s,
                                 "e2e0_s": model.e2e0_s, "cold_start_s": model.cold_start_s,
                                 "source": "calibration" if calibration is not None else "scenario"}
    ctx = Context(model.capacity, model.cold_start_s, cfg.decision_interval_s, rate_fn, duration,
                  w.period_s if w.arrival == "sinusoidal" else None)
    slos = scfg.slos
    for p in cfg.policies:
        entry = {"policy": p.label, "status": "running"}
        manifest["policies"].append(entry)
        if not simulate_only:
            on_step(p.label)
            study.write()
            entry.update(_real_run(study, p, ctx, specs, make_spec, cfg, model, slos))
        ticks, reqs = simulate(p, ctx, model, duration, cfg.decision_interval_s)
        study.ticks.append(ticks.assign(policy=p.label, mode="simulated"))
        row = summarize(p.label, ticks, reqs, model.capacity.usable, rate_fn, duration, slos, cfg.slo_window_s)
        study.summary.append({"mode": "simulated", **row, "cold_start_s": model.cold_start_s,
                              "peak_host_rss_mb": math.nan, "status": "complete"})
        entry["status"] = entry["status"] if not simulate_only else "simulated"
        study.write()
    return study


def _calibrate(cfg: AutoscaleConfig, make_spec, specs, study: Study, on_step) -> tuple[pd.DataFrame, dict]:
    """Capacity per replica count, measured on fresh replicas; written as calibration.csv."""
    from tenancy.autoscale.calibration import calibrate
    from tenancy.autoscale.fleet import Fleet

    on_step("calibration")
    k = cfg.calibration.max_replicas or cfg.max_replicas
    fleet = Fleet(make_spec, cfg.router)
    try:
        calibration, low = calibrate(fleet, specs, k, cfg.calibration.seconds, cfg.calibration.concurrency_per_replica)
    finally:
        fleet.close()
    study.starts.append(_starts(fleet, "calibration"))
    results.write_table(study.run_dir / results.CALIBRATION, calibration)
    return calibration, low


def _real_run(study: Study, p, ctx, specs, make_spec, cfg: AutoscaleConfig, model, slos) -> dict:
    """One policy on the real fleet, its tables appended to the study; returns its manifest entry's update."""
    from tenancy.autoscale.run import run_policy

    run = run_policy(p, ctx, specs, make_spec, cfg.router, cfg.decision_interval_s, cfg.min_replicas, cfg.max_replicas)
    study.ticks.append(run.ticks.assign(policy=p.label, mode="real"))
    study.requests.append(run.requests.assign(policy=p.label))
    study.starts.append(run.replicas.assign(policy=p.label))
    row = summarize(p.label, run.ticks, run.requests, model.capacity.usable, ctx.rate_fn, ctx.duration_s, slos,
                    cfg.slo_window_s)
    cold = run.replicas["cold_start_s"].dropna() if "cold_start_s" in run.replicas else pd.Series(dtype=float)
    study.summary.append({"mode": "real", **row, "cold_start_s": float(cold.mean()) if len(cold) else math.nan,
                          "peak_host_rss_mb": float(run.ticks["host_rss_mb"].max()) if len(run.ticks) else math.nan,
                          "status": run.status})
    return {"status": run.status, "failures": run.failures[:5], "events": run.events}


def _starts(fleet, label: str) -> pd.DataFrame:
    return pd.DataFrame([{"replica": r.id, "final_state": r.state, "served": r.served, "peak_rss_mb": r.peak_rss_mb,
                          **{k: v for k, v in r.cold.items() if k not in ("pid", "ready_t")}} for r in fleet.replicas]).assign(policy=label)
