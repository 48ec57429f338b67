"""The GPU monitor without a GPU: the sampler loop with a stand-in reader, the summary over a
synthetic gpu table, the off states, and the runner writing gpu.parquet (stand-in NVML reader)."""
from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time

import numpy as np
import pandas as pd
import pytest
from fake_nvml import FOREIGN_PID, POWER_W, FakeReader
from helpers import machine

from tenancy.gpu import monitor
from tenancy.gpu.monitor import Monitor, NvmlReader, foreign_processes, frame, launch_summary, sample_loop, window


class Counted(FakeReader):
    """Says when it has been read `n` times, so a test waits for rows, not for a duration."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.enough, self.wanted = threading.Event(), n

    def read(self):
        row = super().read()
        if self.n >= self.wanted:
            self.enough.set()
        return row


def test_sample_loop_samples_only_while_labelled():
    parent, child = mp.Pipe()
    reader = Counted(8)
    loop = threading.Thread(target=sample_loop, args=(reader, child, 0.01))
    loop.start()
    time.sleep(0.1)  # idle: no rows
    assert reader.n == 0
    parent.send(("label", "shared", 1, "shared"))
    assert reader.enough.wait(60)
    parent.send(("flush",))
    rows = parent.recv()[1]
    time.sleep(0.1)
    parent.send(("label", "solo", 0, "enc"))
    time.sleep(0.05)
    parent.send(("stop",))
    last = parent.recv()[1]
    loop.join(5)
    assert not loop.is_alive()
    assert len(rows) >= 8 and all((r["phase"], r["repeat"], r["launch"]) == ("shared", 1, "shared") for r in rows)
    gaps = np.diff([r["time_ns"] for r in rows]) / 1e6
    assert (gaps > 0).all() and np.median(gaps) > 5  # paced by the interval (a busy machine only adds to it)
    assert last and {r["launch"] for r in last} == {"enc"}


def test_a_failed_read_is_a_row_not_the_end():
    class Flaky(Counted):
        def read(self):
            if self.n == 1:
                self.n += 1
                raise RuntimeError("NVML hiccup")
            return super().read()

    parent, child = mp.Pipe()
    reader = Flaky(5)
    loop = threading.Thread(target=sample_loop, args=(reader, child, 0.01))
    loop.start()
    parent.send(("label", "solo", 0, "a"))
    assert reader.enough.wait(60)
    parent.send(("stop",))
    rows = parent.recv()[1]
    loop.join(5)
    df = frame(rows)
    assert list(df["error"].dropna()) == ["RuntimeError: NVML hiccup"] and df["gpu_util_pct"].isna().sum() == 1
    assert df["gpu_util_pct"].notna().sum() >= 3 and df["processes"].map(json.loads).map(len).max() == 1


def _synthetic():
    """Two launches sampled every 100 ms; solo 'a' window 1.0-2.0 s, shared window 11.0-13.0 s."""
    s = 1_000_000_000
    rows = []
    for phase, launch, t0 in (("solo", "a", 0), ("shared", "shared", 10)):
        for k in range(41):
            t = (t0 + k * 0.1) * s
            rows.append({"phase": phase, "repeat": 0, "launch": launch, "time_ns": int(t),
                         "gpu_util_pct": 80.0 if phase == "shared" else 40.0, "mem_util_pct": 10.0,
                         "mem_used_mib": 1000.0 + k, "power_w": 100.0, "energy_j": 5000 + 100.0 * t / s,
                         "throttle_reasons": 0x1 if k % 2 else 0x4, "processes": [(123, 900.0)]})
    samples = pd.DataFrame([
        {"phase": "solo", "repeat": 0, "tenant": "a", "start_ns": 1 * s, "end_ns": 2 * s, "in_window": True,
         "batch": 8, "new_tokens": 4, "task": "forward"},
        {"phase": "solo", "repeat": 0, "tenant": "a", "start_ns": 2 * s, "end_ns": 3 * s, "in_window": False,
         "batch": 8, "new_tokens": 4, "task": "forward"},
        *[{"phase": "shared", "repeat": 0, "tenant": n, "start_ns": 11 * s, "end_ns": 13 * s, "in_window": True,
           "batch": b, "new_tokens": 4, "task": task} for n, b, task in (("a", 8, "forward"), ("g", 2, "generate"))],
    ])
    return window(frame(rows), samples), samples


def test_summary_covers_the_common_window():
    gpu, samples = _synthetic()
    assert gpu.loc[gpu["launch"] == "a", "in_window"].sum() == 11  # 1.0 .. 2.0 s inclusive
    solo, shared = launch_summary(gpu, samples)
    assert solo["launch"] == "a" and solo["rows"] == 11 and solo["items"] == 8
    assert solo["energy_j"] == pytest.approx(100.0) and solo["j_per_item"] == pytest.approx(12.5)
    assert solo["gpu_util_mean_pct"] == 40.0 and solo["mem_used_peak_mib"] == 1020.0
    assert shared["energy_j"] == pytest.approx(200.0) and shared["items"] == 10
    assert shared["j_per_item"] == pytest.approx(20.0) and shared["j_per_token"] == pytest.approx(25.0)
    assert shared["gpu_util_mean_pct"] == 80.0 and shared["window_s"] == pytest.approx(2.0)
    assert 0.4 < shared["throttled_share"] < 0.6  # the idle bit alone is not throttling


def test_only_throttling_bits_count_as_throttled():
    """Sync boost, application clocks and display clock limit clocks by design, not by throttling."""
    gpu, samples = _synthetic()
    for bits, share in ((0x10, 0.0), (0x2, 0.0), (0x100, 0.0), (0x1 | 0x10, 0.0), (0x8, 1.0), (0x40 | 0x10, 1.0)):
        gpu["throttle_reasons"] = float(bits)
        assert launch_summary(gpu, samples)[0]["throttled_share"] == share, hex(bits)


def test_nvml_reader_survives_an_older_driver(fake_nvml):
    """A driver without the _v3 process list (pynvml's unversioned wrapper raises
    NVMLLibraryMismatchError, a plain Exception) and without clock *event* reasons, and a card that
    does not report power: every other field is still read, through the older calls."""
    config = machine(1, missing=["nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetCurrentClocksEventReasons"],
                     unsupported=["nvmlDeviceGetPowerUsage"], gpu0={"processes": [[123, 512]], "reasons": 0x4})
    fake_nvml(config)
    reader = NvmlReader(config["gpus"][0]["uuid"])
    info = reader.describe()
    row = reader.read()
    reader.close()
    assert row["processes"] == [(123, 512.0)] and row["throttle_reasons"] == 0x4 and row["throttle"] == "SwPowerCap"
    assert row["power_w"] is None and row["energy_j"] > 0 and row["gpu_util_pct"] == 87 and row["sm_clock_mhz"] == 1755
    assert info["fields"]["processes"] == "nvmlDeviceGetComputeRunningProcesses_v2"
    assert info["fields"]["clock_reasons"] == "nvmlDeviceGetCurrentClocksThrottleReasons"
    assert "NotSupported" in info["fields_unanswered"]["power"] and info["architecture"] == "hopper"
    assert "1 s average" in info["power_note"]


def test_energy_falls_back_to_integrated_power():
    gpu, samples = _synthetic()
    gpu["energy_j"] = np.nan
    solo, _ = launch_summary(gpu, samples)
    assert solo["energy_j"] == pytest.approx(100.0)  # 100 W over 1 s


def test_foreign_processes_are_named():
    gpu, _ = _synthetic()
    foreign = foreign_processes(gpu, {123})
    assert foreign == []
    foreign = foreign_processes(gpu, {5, 6})
    assert foreign[0]["pid"] == 123 and "container" in foreign[0]["note"]
    assert "pid 123 (900 MiB)" in monitor.foreign_warnings(foreign)[0]


def test_monitor_off_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv(monitor.READER_ENV, raising=False)
    m = Monitor(50, "cpu")
    m.start()
    with m.during("solo", 0, "a"):
        pass
    m.stop()
    assert m.info == {"enabled": False, "interval_ms": 50, "reason": "device is cpu: no GPU to monitor"}
    gpu, summary, warnings = m.table(pd.DataFrame(), {})
    assert gpu.empty and summary == [] and warnings == []
    off = Monitor(0, "cuda")
    off.start()
    assert off.info["reason"] == "monitor_interval_ms is 0"


def test_monitor_off_when_nvml_cannot_start(monkeypatch):
    """On this machine NVML has no driver: the sampler says so and the run would go on."""
    monkeypatch.delenv(monitor.READER_ENV, raising=False)
    if monitor_has_gpu():
        pytest.skip("this machine has a GPU")
    m = Monitor(50, "cuda")
    m.start()
    assert not m.info["enabled"] and m.info["reason"].startswith("cannot read the GPU: NVMLError")
    with m.during("shared", 0, "shared"):
        pass
    m.stop()


def monitor_has_gpu() -> bool:
    from tenancy.gpu import environment

    return bool(environment.nvml_gpus())


def test_runner_writes_gpu_parquet_and_metrics(cpu_streams_run):
    proc, run = cpu_streams_run["proc"], cpu_streams_run["run"]
    assert proc.returncode == 0, proc.stderr
    m = json.loads((run / "manifest.json").read_text())
    assert m["monitor"]["enabled"] and m["monitor"]["interval_ms"] == 20
    assert m["monitor"]["foreign_processes"][0]["pid"] == FOREIGN_PID
    gpu = pd.read_parquet(run / "gpu.parquet")
    assert set(gpu["launch"]) == {"enc", "dec", "shared"} and gpu["time_ns"].is_monotonic_increasing
    samples = pd.read_parquet(run / "samples.parquet")
    assert gpu["time_ns"].min() < samples["start_ns"].min() and gpu["in_window"].any()
    metrics = json.loads((run / "metrics.json").read_text())
    by = {g["launch"]: g for g in metrics["gpu"]}
    shared = by["shared"]
    assert shared["items"] == samples.loc[(samples["phase"] == "shared") & samples["in_window"], "batch"].sum()
    # the stand-in GPU draws 200 W: the counter's energy over the window is 200 W x its length
    assert shared["energy_j"] == pytest.approx(POWER_W * shared["window_s"], rel=0.25, abs=2.0)
    assert any(str(FOREIGN_PID) in w for w in metrics["warnings"])


@pytest.mark.gpu
def test_nvml_monitor_produces_rows(tmp_path):
    m = Monitor(20, "cuda")
    m.start()
    assert m.info["enabled"], m.info
    with m.during("solo", 0, "a"):
        time.sleep(0.5)
    m.stop()
    df = frame(m.rows)
    assert 10 <= len(df) <= 40
    assert df["mem_used_mib"].notna().all() and df["gpu_util_pct"].notna().all() and df["sm_clock_mhz"].notna().all()
