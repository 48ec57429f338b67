"""`sharing: streams` on a CPU: one spawned process, one thread per tenant, the same rows and rules."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import broken_weights, tiny

from tenancy.harness.launch import Interrupted, Launch
from tenancy.harness.runner import Runner, resolve
from tenancy.harness.scenario import Streams, parse_scenario
from tenancy.harness.sharing.streams import CPU_NOTE, HOST_NOTE, StreamsMode, run_threads


def test_cli_streams_run_measures_both_tenants_in_one_process(cpu_streams_run):
    proc, run = cpu_streams_run["proc"], cpu_streams_run["run"]
    assert proc.returncode == 0, proc.stderr
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete"
    sh = m["sharing"]["sessions"][0]
    assert sh["mode"] == "streams" and sh["note"] == CPU_NOTE and sh["streams"] is None
    shared = [t for t in m["tenants"] if t["phase"] == "shared"]
    solo = [t for t in m["tenants"] if t["phase"] == "solo"]
    assert {t["status"] for t in shared} == {"ok"} and len(shared) == 2
    assert len({t["pid"] for t in shared}) == 1 and shared[0]["pid"] not in {t["pid"] for t in solo}
    samples = pd.read_parquet(run / "samples.parquet")
    sh = samples[samples["phase"] == "shared"]
    assert set(sh["sharing"]) == {"streams"} and set(sh["tenant"]) == {"enc", "dec"}
    assert sh.groupby("tenant")["extra"].apply(lambda e: (~e).sum()).min() == 6  # every tenant has its quota
    assert sh["prefill_ms"].notna().sum() == (sh["tenant"] == "dec").sum()
    summary = pd.read_csv(run / "summary.csv")
    assert summary.loc[summary["phase"] == "shared", "slowdown"].notna().all()


def test_host_time_per_iteration_and_the_host_share(cpu_streams_run, tmp_path):
    """Every iteration records how long the host spent issuing its work; the summary's host_share
    is its mean over the mean wall time; streams say on every device that the host is included."""
    run = cpu_streams_run["run"]
    samples = pd.read_parquet(run / "samples.parquet")
    wall_ms = (samples["end_ns"] - samples["start_ns"]) / 1e6
    assert samples["host_ms"].notna().all() and (samples["host_ms"] > 0).all() and (samples["host_ms"] <= wall_ms).all()
    summary = pd.read_csv(run / "summary.csv")
    assert summary["host_share"].between(0.5, 1.0).all()  # on a CPU the host does all the work
    for device in ("cpu", "cuda"):
        mode = StreamsMode(Streams(), device)
        mode.check()
        with mode.session(tmp_path) as info:
            assert info["host_serialisation"] == HOST_NOTE and "interpreter lock" in HOST_NOTE


def _scenario(**kw):
    return resolve(parse_scenario(dict(name="st", sharing="streams", device="cpu", warmup=1, **kw)))


def test_a_failing_thread_stops_the_others(tmp_path):
    s = _scenario(iterations=5, tenants=[tiny("good", "bert-base"),
                                         tiny("bad", "bert-base", seq=8, weights=broken_weights(tmp_path))])
    launch = Launch(Runner(s, tmp_path).jobs("shared", 0, s.instances(), lambda t: {}))
    out = run_threads(launch)
    assert out["shared/0/bad/0"].status == "error" and "empty-weights" in out["shared/0/bad/0"].message
    assert out["shared/0/good/0"].status == "aborted"
    assert out["shared/0/good/0"].pid == out["shared/0/bad/0"].pid and out["shared/0/good/0"].exitcode == 0


def test_interruption_keeps_what_the_threads_measured(tmp_path):
    s = _scenario(iterations=100000, tenants=[tiny("a", "bert-base", batch=1, seq=8),
                                              tiny("b", "bert-base", batch=1, seq=4)])
    checked: list[dict] = []

    def on_event(key, kind, value):
        if kind == "progress" and value >= 3:
            raise KeyboardInterrupt  # what Ctrl-C does to the launcher's loop

    launch = Launch(Runner(s, tmp_path).jobs("shared", 0, s.instances(), lambda t: {}), on_event, checked.append)
    with pytest.raises(Interrupted):
        run_threads(launch)
    assert len(checked) == 1 and len(set(checked[0].values())) == 1  # before_start saw one pid for both
    for out in launch.outcomes.values():
        assert out.status == "interrupted" and len(out.cols["latency_ms"]) >= 1


# --- on a GPU (skipped without one) -----------------------------------------------------------

@pytest.mark.gpu
def test_cuda_timer_matches_the_wall_clock():
    """CUDA events around synchronised work agree with the host clock (to launch overhead)."""
    import time

    import torch

    from tenancy.harness.timer import CudaTimer

    x = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    timer = CudaTimer()
    for _ in range(3):
        x @ x
    torch.cuda.synchronize()
    for _ in range(5):
        t0 = time.perf_counter()
        timer.start()
        for _ in range(20):
            x @ x
        (gpu_ms,) = timer.stop()
        wall_ms = (time.perf_counter() - t0) * 1e3
        assert gpu_ms > 0 and abs(wall_ms - gpu_ms) <= 0.1 * wall_ms + 0.5, (gpu_ms, wall_ms)


@pytest.mark.gpu
def test_streams_on_cuda(tmp_path):
    s = resolve(parse_scenario(dict(name="st", sharing="streams", device="cuda", warmup=2, iterations=20, tenants=[
        tiny("a", "bert-base"), tiny("b", "distilgpt2", task="generate", new_tokens=4)])))
    runner = Runner(s, tmp_path)
    mode = runner.mode
    mode.check()
    with mode.session(tmp_path) as info:
        launch = Launch(runner.jobs("shared", 0, s.instances(), mode.env))
        out = mode.launch(launch)
    assert info["streams"] and {o.status for o in out.values()} == {"ok"}
    assert len({o.pid for o in out.values()}) == 1
    assert all(len(o.cols["latency_ms"]) >= 20 and min(o.cols["latency_ms"]) > 0 for o in out.values())
