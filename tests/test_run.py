"""End to end on CPU with real processes: the results contract and the measurement rules."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from helpers import FAST, broken_weights, tenancy, tenancy_here, tiny, write_scenario

from tenancy.harness.launch import Launch, run_processes
from tenancy.harness.runner import Runner, resolve
from tenancy.harness.scenario import parse_scenario

FILES = ("manifest.json", "samples.parquet", "summary.csv", "metrics.json")


@pytest.fixture(scope="module")
def pair_run(tmp_path_factory):
    """A fast encoder next to a slow decoder, under time-slicing, through the CLI."""
    tmp = tmp_path_factory.mktemp("pair")
    path = write_scenario(tmp / "pair.yaml", name="pair", sharing="timeslice", **FAST, tenants=[
        tiny("enc", "bert-base", batch=1, seq=8),
        tiny("dec", "distilgpt2", task="generate", seq=32, new_tokens=12)])
    proc = tenancy_here("run", path, "--out", tmp / "run")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def test_run_writes_the_four_files(pair_run):
    assert all((pair_run / f).is_file() for f in FILES)
    manifest = json.loads((pair_run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["scenario"]["device"] == "cpu" and manifest["scenario"]["tenants"][0]["dtype"] == "float32"
    assert manifest["environment"]["torch"] and manifest["environment"]["cpu_count"] >= 1
    assert [(t["phase"], t["tenant"], t["status"]) for t in manifest["tenants"]] == [
        ("solo", "enc", "ok"), ("solo", "dec", "ok"), ("shared", "enc", "ok"), ("shared", "dec", "ok")]
    # each tenant's overlap is the share of its required samples inside its launch's window
    # (how much that is depends on how the scheduler released the tenants: not asserted)
    samples = pd.read_parquet(pair_run / "samples.parquet")
    for t in manifest["tenants"]:
        mine = samples[(samples["phase"] == t["phase"]) & (samples["tenant"] == t["tenant"]) & ~samples["extra"]]
        assert t["overlap"] == pytest.approx(mine["in_window"].mean())
    assert [t["overlap"] for t in manifest["tenants"] if t["phase"] == "solo"] == [1.0, 1.0]


def test_summary_and_metrics_agree_with_the_samples(pair_run):
    samples = pd.read_parquet(pair_run / "samples.parquet")
    summary = pd.read_csv(pair_run / "summary.csv")
    metrics = json.loads((pair_run / "metrics.json").read_text())
    win = samples[samples["in_window"]]
    mean = win.groupby(["phase", "tenant"])["latency_ms"].mean()
    slowdowns = {t: mean["shared", t] / mean["solo", t] for t in ("enc", "dec")}
    for t, sd in slowdowns.items():
        row = summary[(summary["phase"] == "shared") & (summary["tenant"] == t)].iloc[0]
        assert row["slowdown"] == pytest.approx(sd, rel=1e-4)
        assert row["n"] == len(win[(win["phase"] == "shared") & (win["tenant"] == t)])
        # a percentile needs 10 samples beyond it: p50 from 20, p99 from 1,000
        assert np.isnan(row["p99_ms"]) == (row["n"] < 1000) and np.isnan(row["p50_ms"]) == (row["n"] < 20)
        assert row["slowdown_ci_low"] <= row["slowdown"] <= row["slowdown_ci_high"]
        assert row["verdict"] in ("slower", "faster", "indistinguishable")
    stp = sum(1 / s for s in slowdowns.values())
    assert metrics["stp"] == pytest.approx(stp, rel=1e-4)
    assert metrics["antt"] == pytest.approx(np.mean(list(slowdowns.values())), rel=1e-4)
    assert 0.5 <= metrics["fairness"] <= 1.0
    # one repeat: the interval comes from a block bootstrap within the launches, and says so
    assert metrics["ci_basis"] == "within-run" and metrics["n_repeats"] == 1
    assert metrics["stp_ci"][0] <= metrics["stp"] <= metrics["stp_ci"][1]
    assert [p["order"] for p in metrics["per_repeat"]] == json.loads((pair_run / "manifest.json").read_text())["orders"]
    dec = win[(win["tenant"] == "dec")]
    assert dec["prefill_ms"].notna().all() and (dec["decode_ms_per_token"] > 0).all()
    assert (dec["prefill_ms"] < dec["latency_ms"]).all()
    row = summary[(summary["phase"] == "solo") & (summary["tenant"] == "dec")].iloc[0]
    assert row["tokens_per_s"] == pytest.approx(2 * 12 * 1000 / row["mean_ms"], rel=1e-4)


def test_roofline_columns_come_from_the_measured_peaks(pair_run):
    """Peaks measured once per dtype at the start of the run; every row (alone and shared) gets
    its floor on them, and MFU is the floor's FLOPs at the measured mean over the peak."""
    from tenancy.analysis import roofline

    peaks = json.loads((pair_run / "manifest.json").read_text())["peaks"]["float32"]
    assert peaks["device"] == "cpu" and peaks["flops_per_s"] > 0 and peaks["bytes_per_s"] > 0
    summary = pd.read_csv(pair_run / "summary.csv")
    assert set(summary["bound"]) <= {"compute", "memory"} and (summary["floor_ms"] > 0).all()
    enc = summary[summary["tenant"] == "enc"]
    flops = roofline.forward(roofline.dims("bert-base", "tiny"), 1, 8, 4).flops
    achieved = flops / (enc["mean_ms"].to_numpy() / 1e3)
    assert enc["mfu"].to_numpy() == pytest.approx(achieved / peaks["flops_per_s"], rel=1e-4)  # CSV: 6 digits


def test_window_rule_fast_tenant_keeps_running_for_the_slow_one(pair_run):
    s = pd.read_parquet(pair_run / "samples.parquet")
    shared = s[s["phase"] == "shared"]
    enc, dec = shared[shared["tenant"] == "enc"], shared[shared["tenant"] == "dec"]
    assert (~enc["extra"]).sum() == FAST["iterations"] and (~dec["extra"]).sum() == FAST["iterations"]
    assert enc["extra"].sum() > 0, "the fast tenant stopped instead of keeping the slow one company"
    assert enc["end_ns"].max() >= dec["end_ns"].max() - dec["latency_ms"].max() * 1e6 * 1.5
    # the slow tenant's samples are co-located from the fast one's start on, and the window
    # bounds every in-window sample
    assert dec.loc[dec["start_ns"] >= enc["start_ns"].min(), "in_window"].all()
    start = shared.groupby("tenant")["start_ns"].min().max()
    end = shared.groupby("tenant")["end_ns"].max().min()
    inside = (np.minimum(shared["end_ns"], end) - np.maximum(shared["start_ns"], start)).clip(lower=0)
    share = inside / (shared["end_ns"] - shared["start_ns"])
    assert (share[shared["in_window"]] >= 0.9).all() and (share[~shared["in_window"]] < 0.9).all()
    assert not enc.loc[enc["start_ns"] >= dec["end_ns"].max(), "in_window"].any(), \
        "samples after the slow tenant stopped must be excluded"


def test_results_never_overwrite_a_run(pair_run, tmp_path):
    before = (pair_run / "samples.parquet").stat().st_mtime_ns
    path = write_scenario(tmp_path / "s.yaml", name="again", **FAST, tenants=[tiny("a", "bert-base")])
    proc = tenancy_here("run", path, "--out", pair_run)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert (pair_run / "samples.parquet").stat().st_mtime_ns == before


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    from tenancy.core import results

    path = tmp_path / "metrics.json"
    results.write_json(path, {"stp": 1.5})

    def half_then_fail(tmp):
        tmp.write_text('{"stp": ')
        raise KeyboardInterrupt  # Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        results._atomic(path, half_then_fail)
    assert json.loads(path.read_text()) == {"stp": 1.5} and sorted(tmp_path.iterdir()) == [path]


def test_default_run_dirs_are_fresh(tmp_path):
    from tenancy.core.results import new_run_dir

    a = new_run_dir(None, "x", root=tmp_path)
    b = new_run_dir(None, "x", root=tmp_path)
    assert a != b and a.parent == b.parent == tmp_path and a.name.startswith("x-")


@pytest.mark.slow
def test_exclusive_runs_solo_only_and_a_failing_tenant_keeps_the_rest(tmp_path):
    path = write_scenario(tmp_path / "s.yaml", name="excl", sharing="exclusive", **FAST, tenants=[
        tiny("good", "bert-base"), tiny("broken", "distilgpt2", weights=broken_weights(tmp_path))])
    proc = tenancy("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "run failed: broken#0 error" in proc.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert {t["tenant"]: t["status"] for t in manifest["tenants"]} == {"good": "ok", "broken": "error"}
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert set(samples["phase"]) == {"solo"} and len(samples[samples["tenant"] == "good"]) == FAST["iterations"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["stp"] is None


@pytest.mark.slow
def test_a_crashed_tenant_stops_the_others_who_keep_their_samples(tmp_path):
    """Kill one tenant mid-measurement: it is reported crashed, the other hands in what it has."""
    scenario = resolve(parse_scenario(dict(name="crash", device="cpu", iterations=100000, warmup=1, tenants=[
        tiny("victim", "bert-base"), tiny("other", "bert-base", seq=8)])))
    runner = Runner(scenario, tmp_path)
    jobs = runner.jobs("shared", 0, scenario.instances(), lambda t: {})
    progress: dict[str, int] = {}

    def on_event(key, kind, value):
        if kind == "progress":
            progress[key] = value
            if key.endswith("/victim/0") and value >= 5:
                os.kill(launch.outcomes[key].pid, signal.SIGKILL)

    launch = Launch(jobs, on_event)
    outcomes = run_processes(launch)
    victim, other = outcomes["shared/0/victim/0"], outcomes["shared/0/other/0"]
    assert victim.status == "crashed" and victim.exitcode == -signal.SIGKILL
    assert other.status == "aborted" and len(other.cols["latency_ms"]) > 0
    # the survivor ran on alone until the launcher noticed; the window closes where the victim
    # was last seen alive, so none of those solo samples counts as shared
    assert launch.stopped_ns is not None and max(other.cols["end_ns"]) > launch.stopped_ns
    runner._collect(launch)
    df = runner.frames[-1]
    mine = df[df["tenant"] == "other"]
    assert mine["in_window"].any() and (mine.loc[mine["in_window"], "end_ns"] <= launch.stopped_ns).all()
    assert not mine.loc[mine["start_ns"] > launch.stopped_ns, "in_window"].any()
    assert runner.manifest["window_closed_early"][0]["at_ns"] == launch.stopped_ns


@pytest.mark.slow
def test_sigint_keeps_what_was_measured(tmp_path):
    path = write_scenario(tmp_path / "s.yaml", name="long", device="cpu", warmup=1, iterations=1000000, repeats=1,
                          tenants=[tiny("a", "bert-base"), tiny("b", "bert-base", seq=8)])
    out = tmp_path / "run"
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tenancy", "run", str(path), "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        deadline = time.monotonic() + 300
        # the solo phase never ends by itself here; interrupt it once the first tenant measures
        # (its first progress report comes after 0.2 s of measured iterations)
        while "solo/0/a/0: measuring" not in log.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert manifest["tenants"][0]["status"] == "interrupted" and manifest["tenants"][0]["samples"] > 0
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == manifest["tenants"][0]["samples"]


@pytest.mark.slow
def test_serving_engine_runs_as_a_tenant(tmp_path):
    """A `task: serve` tenant next to an encoder: one sample per request, requests.parquet, and
    the slowdown of each latency metric against its solo run.

    The requests arrive over about half a second (Poisson), so that some arrive inside the common
    window however late the encoder's first sample starts on a loaded machine: with every request
    arriving at the barrier, a late neighbour left none in the window (the run is then
    `incomplete`, correctly, but this test is about a run that is complete)."""
    path = write_scenario(tmp_path / "s.yaml", name="serve", **FAST, tenants=[
        tiny("enc", "bert-base"),
        {"name": "llm", "model": "llama-3.2-1b", "size": "tiny", "task": "serve", "serving": {
            "max_batch_size": 4, "workload": {"arrival": "poisson", "rate": 12, "num_requests": 6,
                                              "input_len": [8, 24], "output_len": [2, 6]}}}])
    proc = tenancy_here("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    requests = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    llm = samples[samples["tenant"] == "llm"]
    for phase in ("solo", "shared"):
        req = requests[(requests["phase"] == phase) & (requests["replay"] == 0)]
        assert sorted(req["request_id"]) == list(range(6)) and (req["status"] == "finished").all()
        rows = llm[llm["phase"] == phase]
        assert len(rows) == len(requests[requests["phase"] == phase])
        assert rows["latency_ms"].to_numpy() == pytest.approx(
            requests.loc[requests["phase"] == phase, "e2e_ms"].to_numpy())
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    serving = metrics["serving"]
    assert [s["tenant"] for s in serving] == ["llm"]
    assert serving[0]["e2e_mean_slowdown"] > 0 and serving[0]["ttft_mean_slowdown"] > 0
    assert serving[0]["ttft_p99_slowdown"] is None  # p99 of fewer than 1,000 requests is not reported
    # STP is over the closed-loop tenants only: the server's E2E is queueing, not progress
    assert metrics["n_tenants"] == 1 and [p["tenant"] for p in metrics["per_tenant"] if p["task"] != "serve"] == ["enc"]


@pytest.mark.slow
def test_a_run_that_measured_nothing_still_writes_its_tables(tmp_path):
    """The only tenant fails while loading: exit 1, and samples/summary exist, empty, with their
    columns, so a script that loads every run directory needs no special case."""
    path = write_scenario(tmp_path / "s.yaml", name="nothing", sharing="exclusive", **FAST,
                          tenants=[tiny("broken", "bert-base", weights=broken_weights(tmp_path))])
    proc = tenancy("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 1 and "run failed: broken#0 error" in proc.stderr
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    summary = pd.read_csv(tmp_path / "run" / "summary.csv")
    assert samples.empty and {"latency_ms", "start_ns", "in_window", "config"} <= set(samples.columns)
    assert summary.empty and {"mean_ms", "slowdown", "verdict", "floor_ms", "mfu"} <= set(summary.columns)


@pytest.mark.parametrize("err,status", [
    (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 bytes"), "oom"),
    (MemoryError(), "oom"),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("[enforce fail at x.cpp:1] shape mismatch"), "error"),
])
def test_out_of_memory_is_told_apart_on_cpu_and_gpu(err, status):
    from tenancy.harness.tenant import _classify

    assert _classify(err)[0] == status
