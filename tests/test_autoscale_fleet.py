"""The replica fleet: routing, draining without loss, scenario checks, and one small real run."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tenancy.autoscale.fleet import Fleet, Replica, Router
from tenancy.autoscale.replica import ReplicaSpec
from helpers import tenancy, tenancy_here, write_scenario


def test_jsq_picks_the_ready_replica_with_least_in_flight_and_round_robin_cycles():
    reps = [Replica(0, "ready", {1, 2}), Replica(1, "starting"), Replica(2, "ready", {3}), Replica(3, "draining")]
    assert Router("jsq").pick(reps).id == 2
    reps[2].in_flight |= {4, 5}
    assert Router("jsq").pick(reps).id == 0  # 2 vs 3 in flight; starting and draining never get requests
    rr = Router("round_robin")
    assert [rr.pick(reps).id for _ in range(4)] == [0, 2, 0, 2]
    assert Router("jsq").pick([Replica(0, "starting")]) is None


def _sleep_spec(i: int) -> ReplicaSpec:
    return ReplicaSpec(i, "sleep", {}, "cpu", 1, 0, service_s=0.05, slots=2)


def test_a_drained_replica_finishes_what_it_holds_and_gets_nothing_new():
    fleet = Fleet(_sleep_spec)
    try:
        fleet.scale_to(2)
        while fleet.count("starting"):
            fleet.poll(0.1)
        for i in range(6):
            fleet.submit((i, [5, 6], 1, 0))
        held = {r.id: set(r.in_flight) for r in fleet.replicas}
        assert all(held.values())  # JSQ spread them over both
        fleet.scale_to(1)
        gone = next(r for r in fleet.replicas if r.state in ("draining", "stopping"))
        for i in range(6, 10):
            fleet.submit((i, [5, 6], 1, 0))
        rows = []
        while len(rows) < 10:
            rows += fleet.poll(0.1)
        by_id = {r["request_id"]: r["replica"] for r in rows}
        assert sorted(by_id) == list(range(10)) and all(r["status"] == "finished" for r in rows)
        assert {i for i, rep in by_id.items() if rep == gone.id} == held[gone.id]  # nothing new after removal
        while gone.state != "stopped":
            fleet.poll(0.1)
        assert fleet.count("ready") == 1 and not fleet.failures
    finally:
        fleet.close()


BASE = {"name": "scale-test", "device": "cpu", "sharing": "timeslice", "seed": 0,
        "tenants": [{"name": "llm", "model": "llama-3.2-1b", "size": "tiny", "task": "serve", "serving": {
            "max_batch_size": 4, "max_tokens_per_iteration": 256,
            "workload": {"arrival": "sinusoidal", "rate": 4, "amplitude": 0.5, "period_s": 3, "duration_s": 3,
                         "input_len": 8, "output_len": 4},
            "slos": {"ttft_ms": 2000, "e2e_ms": 4000}}}],
        "autoscale": {"min_replicas": 1, "max_replicas": 2, "capacity_rps": [5, 8], "base_latency_s": 0.1,
                      "cold_start_s": 3.0, "policies": [{"policy": "static", "replicas": 2}]}}


def test_autoscale_block_is_validated_with_the_scenario(tmp_path):
    from tenancy.core.errors import TenancyError
    from tenancy.harness.scenario import parse_scenario

    bad = json.loads(json.dumps(BASE))
    bad["autoscale"]["min_replicas"] = 3
    with pytest.raises(TenancyError, match="max_replicas"):
        parse_scenario(bad)
    two = json.loads(json.dumps(BASE))
    two["tenants"].append({**two["tenants"][0], "name": "other"})
    with pytest.raises(TenancyError, match="exactly one tenant"):
        parse_scenario(two)
    unknown = json.loads(json.dumps(BASE))
    unknown["autoscale"]["policies"] = [{"policy": "magic"}]
    with pytest.raises(TenancyError, match="autoscale"):
        parse_scenario(unknown)
    r = tenancy_here("run", write_scenario(tmp_path / "s.yaml", **BASE))
    assert r.returncode == 2 and "tenancy scale" in r.stderr and "Traceback" not in r.stderr
    r = tenancy_here("scale", Path(__file__).parent.parent / "scenarios" / "demo-cpu.yaml")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "no autoscale block" in r.stderr


@pytest.mark.slow
def test_one_small_real_run_serves_every_request_on_two_replicas(tmp_path):
    """Tiny Llama engine, two replica processes, a 3 s sinusoid: every request is served and
    recorded with its replica, and the report draws the scale figures."""
    out = tmp_path / "scale"
    r = tenancy("scale", write_scenario(tmp_path / "s.yaml", **BASE), "--out", out)
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "scale" and manifest["status"] == "complete"
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) == manifest["num_requests"] > 0 and (req["status"] == "finished").all()
    assert set(req["replica"]) <= {0, 1} and (req["e2e_ms"] >= req["ttft_ms"]).all()
    ticks = pd.read_parquet(out / "replicas.parquet")
    assert set(ticks["mode"]) == {"real", "simulated"} and (ticks.query("mode == 'real'")["provisioned"] == 2).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["mode"]) == ["real", "simulated"] and (summary["policy"] == "static-2").all()
    starts = pd.read_csv(out / "replica_starts.csv")
    assert len(starts) == 2 and (starts["cold_start_s"] > 0).all() and (starts["served"].sum() == len(req))
    rep = tenancy_here("report", out)
    assert rep.returncode == 0, rep.stderr
    assert (out / "report" / "figures" / "scale_replicas.png").exists()
