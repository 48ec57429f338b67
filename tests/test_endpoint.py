"""Endpoint tenants (`task: endpoint`): a real server process driven over HTTP, on CPU with
tests/fake_openai_server.py standing in for vLLM."""
from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import tenancy, tenancy_here, write_scenario

from tenancy.endpoint.client import drive, request_row
from tenancy.endpoint.process import Server, free_port
from tenancy.harness.scenario import parse_scenario
from tenancy.serving.metrics import request_summary
from tenancy.serving.workload import RequestSpec

FAKE = str(Path(__file__).with_name("fake_openai_server.py"))
WORKLOAD = {"arrival": "poisson", "rate": 40, "num_requests": 12, "input_len": [4, 8], "output_len": [2, 6]}


def endpoint_tenant(name: str, *flags: str, pid_file: Path | None = None, **block) -> dict:
    cmd = [sys.executable, FAKE, "--port", "{port}", *flags, *(["--pid-file", str(pid_file)] if pid_file else [])]
    return {"name": name, "model": "llama-3.2-1b", "size": "tiny", "task": "endpoint",
            "endpoint": {"command": cmd, "ready_timeout_s": 60, "env": {"MY_ENV": "port-{port}"},
                         "workload": WORKLOAD, **block}}


def scenario(tmp: Path, *tenants: dict, warmup: int = 0) -> Path:
    return write_scenario(tmp / "s.yaml", name="ep", device="cpu", sharing="timeslice", repeats=1, iterations=1,
                          warmup=warmup, tenants=list(tenants))


def leftovers(pid_file: Path) -> list[int]:
    """Processes still alive in the groups of the servers the pid file names (server pid = pgid)."""
    groups = {int(line.split()[0]) for line in pid_file.read_text().splitlines()}
    alive = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) in groups:
                alive.append(int(entry.name))
    return alive


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("endpoints")
    pids = tmp / "pids"
    path = scenario(tmp, endpoint_tenant("a", "--delay-ms", "2", pid_file=pids),
                    endpoint_tenant("b", "--delay-ms", "4", pid_file=pids, slos={"ttft_ms": 5000}), warmup=2)
    proc = tenancy_here("run", path, "--out", tmp / "run")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", pids


def test_two_endpoint_tenants_run_solo_and_shared(pair):
    run, _ = pair
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [(t["phase"], t["tenant"], t["status"]) for t in manifest["tenants"]] == [
        ("solo", "a", "ok"), ("solo", "b", "ok"), ("shared", "a", "ok"), ("shared", "b", "ok")]
    samples = pd.read_parquet(run / "samples.parquet")
    assert set(samples["task"]) == {"endpoint"}
    first = samples[~samples["extra"]]
    assert first.groupby(["phase", "tenant"]).size().to_dict() == {(p, t): 12 for p in ("solo", "shared")
                                                                  for t in "ab"}
    assert (samples["prefill_ms"] > 0).all() and (samples["latency_ms"] >= samples["prefill_ms"]).all()
    req = pd.read_parquet(run / "requests.parquet")
    assert (req["status"] == "finished").all() and set(req["engine"]) == {"endpoint"}
    assert (req["output_len"] == req["max_new_tokens"]).all()  # from the usage chunk
    assert (req["token_times_s"].map(len) == req["output_len"]).all()
    many = req[req["output_len"] > 1]
    assert many["tpot_ms"].notna().all()
    summary = pd.read_csv(run / "summary.csv")
    shared = summary[summary["phase"] == "shared"].set_index("tenant")
    assert shared.loc[["a", "b"], "slowdown"].notna().all()
    assert shared.loc["a", "prefill_ms"] > 0 and shared.loc["a", "decode_ms_per_token"] > 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["serving"] if "serving" in metrics else True
    logs = sorted(p.name for p in (run / "logs").iterdir())
    assert logs == ["shared-0-a-0.log", "shared-0-b-0.log", "solo-0-a-0.log", "solo-0-b-0.log"]
    text = (run / "logs" / "solo-0-a-0.log").read_text()
    assert "fake server on port" in text and "MY_ENV=port-" in text  # the env block, port filled


def test_warm_up_requests_reach_the_server_but_are_never_measured(pair):
    run, _ = pair
    sent = {p.stem: p.read_text().count("completion max_tokens=") for p in (run / "logs").glob("*.log")}
    assert sent["solo-0-a-0"] == sent["solo-0-b-0"] == 2 + 12  # warm-up, then one pass alone
    samples = pd.read_parquet(run / "samples.parquet")
    solo = samples[samples["phase"] == "solo"]
    assert solo.groupby("tenant").size().to_dict() == {"a": 12, "b": 12}


def test_the_server_process_groups_are_gone_after_the_run(pair):
    _, pids = pair
    assert len(pids.read_text().splitlines()) == 4
    assert leftovers(pids) == []


def test_a_server_that_exits_before_ready_fails_its_tenant_and_keeps_the_rest(tmp_path):
    pids = tmp_path / "pids"
    path = scenario(tmp_path, endpoint_tenant("good"), endpoint_tenant("bad", "--exit-code", "3", pid_file=pids))
    proc = tenancy("run", path, "--out", tmp_path / "run")
    assert proc.returncode == 1
    line = [x for x in proc.stderr.splitlines() if "exited with code 3" in x]
    assert line and "bad#0" in line[0] and "bad-0.log" in line[0], proc.stderr
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [(t["tenant"], t["status"]) for t in manifest["tenants"]] == [("good", "ok"), ("bad", "error")]
    samples = pd.read_parquet(tmp_path / "run" / "samples.parquet")
    assert (samples["tenant"] == "good").sum() >= 12
    assert "failing on purpose" in (tmp_path / "run" / "logs" / "solo-0-bad-0.log").read_text()
    assert leftovers(pids) == []  # its worker went with it


def test_a_server_that_never_answers_hits_ready_timeout(tmp_path):
    pids = tmp_path / "pids"
    t = endpoint_tenant("slow", "--never-ready", pid_file=pids)
    t["endpoint"]["ready_timeout_s"] = 2
    proc = tenancy("run", scenario(tmp_path, t), "--out", tmp_path / "run")
    assert proc.returncode == 1
    assert "ready_timeout_s=2" in proc.stderr and "slow#0" in proc.stderr and "solo-0-slow-0.log" in proc.stderr
    assert leftovers(pids) == []


def test_metrics_count_from_the_scheduled_arrival():
    spec = RequestSpec(7, 1.0, [5, 6, 7], 4)
    # scheduled at 1.0 s, sent late at 1.5 s, chunks at 2, 2.5, 3, finished at 3.1; usage says 5 tokens
    row = request_row(spec, 1.0, 1.5, [2.0, 2.5, 3.0], 3.1, 5)
    assert row["status"] == "finished" and row["output_len"] == 5 and row["input_len"] == 3
    assert row["queue_ms"] == pytest.approx(500)  # the client's lateness, counted in the latencies
    assert row["ttft_ms"] == pytest.approx(1000) and row["e2e_ms"] == pytest.approx(2100)
    assert row["tpot_ms"] == pytest.approx((2100 - 1000) / 4)
    summary = request_summary(pd.DataFrame([row]), {"ttft_ms": 999})
    assert summary["mean_itl_ms"] == pytest.approx(500) and summary["goodput"] == 0
    no_usage = request_row(spec, 1.0, 1.0, [2.0, 2.5], 2.5, None)
    assert no_usage["output_len"] == 2 and no_usage["tpot_ms"] == pytest.approx(500)
    failed = request_row(spec, 1.0, 1.0, [], 1.2, None, "HTTP 500: boom")
    assert failed["status"] == "failed" and math.isnan(failed["ttft_ms"])


def test_the_client_streams_from_a_server_and_stops_on_request(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = Server("t", [sys.executable, FAKE, "--port", str(port), "--delay-ms", "1"], {}, url, tmp_path / "log")
    try:
        assert server.wait_ready(30) == ["fake-model"]
        specs = [RequestSpec(i, 0.01 * i, [3, 4], 3) for i in range(5)]
        rows = asyncio.run(drive(url, "fake-model", specs, time.perf_counter_ns()))
        assert [r["request_id"] for r in rows] == list(range(5))
        assert all(r["status"] == "finished" and r["output_len"] == 3 for r in rows)
        closed = [RequestSpec(i, None, [3], 2) for i in range(4)]
        rows = asyncio.run(drive(url, None, closed, time.perf_counter_ns(), concurrency=2))
        assert len(rows) == 4 and all(r["status"] == "finished" for r in rows)
        late = [RequestSpec(i, 30.0, [3], 2) for i in range(3)]  # stopped before any is due
        t = time.monotonic()
        assert asyncio.run(drive(url, None, late, time.perf_counter_ns(), stop=lambda: time.monotonic() - t > 0.3)) == []
    finally:
        server.stop()
    assert server.proc.poll() is not None


@pytest.mark.parametrize("tenant, message", [
    (dict(task="endpoint"), "needs an endpoint block"),
    (dict(endpoint={"command": ["x"]}), "needs task: endpoint"),
    (dict(task="endpoint", model="bert-base", endpoint={"command": ["x"]}), "needs a decoder"),
    (dict(task="endpoint", endpoint={"command": []}), "at least 1"),
])
def test_endpoint_blocks_are_validated(tenant, message):
    from tenancy.core.errors import TenancyError

    with pytest.raises(TenancyError, match=message):
        parse_scenario({"name": "s", "tenants": [{"name": "t", "model": "llama-3.2-1b", "size": "tiny", **tenant}]})


def test_streams_mode_refuses_endpoint_tenants():
    from tenancy.core.errors import TenancyError

    with pytest.raises(TenancyError, match="streams mode"):
        parse_scenario({"name": "s", "sharing": "streams", "tenants": [
            {"name": "t", "model": "llama-3.2-1b", "size": "tiny", "task": "endpoint", "endpoint": {"command": ["x"]}}]})


@pytest.mark.slow
def test_a_stopped_run_ends_every_server_group(tmp_path):
    """Ctrl-C and SIGHUP to the terminal's group, SIGTERM to the command: exit 130, status
    interrupted, and neither the command's group nor any server's group has a process left."""
    import signal
    import subprocess

    stops = {"SIGINT": (signal.SIGINT, True), "SIGTERM": (signal.SIGTERM, False), "SIGHUP": (signal.SIGHUP, True)}
    procs = {}
    for stop in stops:
        work = tmp_path / stop
        work.mkdir()
        t = endpoint_tenant("a", pid_file=work / "pids")
        t["endpoint"]["workload"] = {**WORKLOAD, "rate": 5, "num_requests": 2000}  # 400 s: outlasts the test
        log = (work / "stderr.log").open("w")
        procs[stop] = subprocess.Popen([sys.executable, "-m", "tenancy", "run", str(scenario(work, t)), "--out",
                                        str(work / "out")], stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        for stop, proc in procs.items():
            log = tmp_path / stop / "stderr.log"
            while "measuring" not in log.read_text():
                assert time.monotonic() < deadline and proc.poll() is None, f"{stop}: {log.read_text()}"
                time.sleep(0.2)
            time.sleep(1)
            sig, to_group = stops[stop]
            os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
        for proc in procs.values():
            proc.wait(timeout=120)
    finally:  # a failed test must not leave its runs going
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
    for stop, proc in procs.items():
        err = (tmp_path / stop / "stderr.log").read_text()
        assert proc.returncode == 130 and "Traceback" not in err, f"{stop}: {err}"
        assert leftovers(tmp_path / stop / "pids") == [], stop
        manifest = json.loads((tmp_path / stop / "out" / "manifest.json").read_text())
        assert manifest["status"] == "interrupted", stop
