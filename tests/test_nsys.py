"""`tenancy run --nsys`: command lines, the missing-nsys error, and the flow with a stand-in nsys."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import tiny, write_scenario

from tenancy.core.errors import TenancyError
from tenancy.gpu import nsys


def test_missing_nsys_is_one_line_naming_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TENANCY_NSYS", "no-such-nsys")
    with pytest.raises(TenancyError, match=r"install it .*and put `nsys` on PATH"):
        nsys.find_nsys()
    path = write_scenario(tmp_path / "s.yaml", name="s", device="cpu", tenants=[tiny("a", "bert-base")])
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    env.pop("TENANCY_NSYS", None)
    proc = subprocess.run([sys.executable, "-m", "tenancy", "run", str(path), "--nsys", "--out", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "Nsight Systems" in proc.stderr and not (tmp_path / "run").exists()


def test_command_lines():
    inner = nsys.inner_run_command("s.yaml", Path("/r/run"), ["--iterations", "5"])
    assert inner == [sys.executable, "-m", "tenancy", "run", "s.yaml", "--out", "/r/run", "--iterations", "5"]
    cmd = nsys.profile_command("/opt/nsys", Path("/r/run/nsys/profile"), inner)
    assert cmd[:2] == ["/opt/nsys", "profile"] and cmd[-len(inner):] == inner
    opts = cmd[2:-len(inner)]
    assert "--trace=cuda,nvtx,osrt" in opts and not any(o.startswith("--trace-fork-before-exec") for o in opts)
    assert "--output=/r/run/nsys/profile" in opts and all(o.startswith("--") for o in opts)
    stats = nsys.stats_command("/opt/nsys", Path("/r/run/nsys/profile.nsys-rep"), Path("/r/run/nsys/stats"))
    assert stats == ["/opt/nsys", "stats", "--report=cuda_gpu_kern_sum", "--format=csv", "--force-export=true",
                     "--output=/r/run/nsys/stats", "/r/run/nsys/profile.nsys-rep"]


def test_profiled_run_marker(tmp_path, monkeypatch):
    monkeypatch.delenv(nsys.MARKER_ENV, raising=False)
    assert not nsys.is_profiled_run(str(tmp_path))
    monkeypatch.setenv(nsys.MARKER_ENV, str(tmp_path))
    assert nsys.is_profiled_run(str(tmp_path)) and not nsys.is_profiled_run(str(tmp_path / "other"))


def test_run_under_stand_in_nsys(cpu_streams_run):
    proc, run = cpu_streams_run["proc"], cpu_streams_run["run"]
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in cpu_streams_run["nsys_log"].read_text().splitlines()]
    assert [c[0] for c in calls] == ["profile", "stats"]
    profile = calls[0]
    assert f"--output={run.resolve()}/nsys/profile" in profile and "--trace=cuda,nvtx,osrt" in profile
    inner = profile[profile.index(sys.executable):]
    assert inner[1:4] == ["-m", "tenancy", "run"] and inner[-2:] == ["--out", str(run.resolve())]
    assert (run / "nsys" / "profile.nsys-rep").exists()
    kernels = pd.read_csv(run / "nsys" / "kernels.csv")
    assert list(kernels["Name"]) == ["fake_gemm_kernel"]
    m = json.loads((run / "manifest.json").read_text())
    assert m["status"] == "complete" and m["nsys"]["exit"] == 0
    assert m["nsys"]["report"] == "nsys/profile.nsys-rep" and m["nsys"]["kernels"] == "nsys/kernels.csv"
