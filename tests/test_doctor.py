"""`tenancy doctor`: on this CPU machine, and on made-up GPU machines (tests/fake_pynvml)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import machine, tenancy_here

from tenancy.cli import doctor
from tenancy.gpu import environment

HERE = Path(__file__).parent


def _doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenancy", "doctor", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def _rows(rows) -> dict[str, doctor.Check]:
    return {r.name: r for r in rows}


@pytest.mark.slow
def test_on_a_machine_without_a_gpu_it_says_so_and_passes():
    if environment.nvml_gpus():
        pytest.skip("this machine has a GPU")
    table = tenancy_here("doctor")
    assert table.returncode == 0, table.stderr
    assert "no NVIDIA GPU here" in " ".join(table.stdout.split()) and "nothing blocks a run here" in table.stdout
    report = json.loads(tenancy_here("doctor", "--json").stdout)
    rows = {r["name"]: r for r in report["checks"]}
    assert not report["blocked"] and rows["NVIDIA GPU"]["status"] == "info"
    assert "timeslice" in rows["NVIDIA GPU"]["detail"] and "sharing mps" in rows["NVIDIA GPU"]["detail"]
    assert rows["seed study"]["status"] == "info" and "GiB of host memory" in rows["seed study"]["detail"]


def test_a_gpu_with_a_cpu_build_of_torch_blocks_with_a_fix(tmp_path, fake_nvml):
    """A real process: the stand-in NVML sees two H100s, torch here has no CUDA: exit 1."""
    fake_nvml(machine(2))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, src in (("nsys", "fake_nsys.py"), ("nvidia-cuda-mps-control", "fake_mps_control.py")):
        (bin_dir / name).write_text(f"#!{sys.executable}\n" + (HERE / src).read_text())
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    res = _doctor("--json", env=env)
    assert res.returncode == 1, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["checks"]}
    assert rows["driver and torch"]["status"] == "block" and "CUDA build of torch" in rows["driver and torch"]["fix"]
    assert rows["GPU 1"]["status"] == "ok" and "GPU-00000001" in rows["GPU 1"]["detail"]
    assert rows["nsys"]["status"] == "ok" and "Nsight Systems version 2024.6.1" in rows["nsys"]["detail"]
    assert rows["nvidia-cuda-mps-control"]["status"] == "ok"


@pytest.fixture
def cuda_torch(monkeypatch):
    monkeypatch.setattr(environment, "torch_has_cuda", lambda: True)
    monkeypatch.setattr(environment, "torch_cuda_version", lambda: "12.4")


def test_rows_for_a_gpu_machine(tmp_path, fake_nvml, cuda_torch, monkeypatch):
    config = machine(2, missing=["nvmlDeviceGetComputeRunningProcesses_v3"], unsupported=["nvmlDeviceGetPowerUsage"],
                     gpu1={"compute_mode": 2, "processes": [[4_000_000, 900]]})
    fake_nvml(config)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    rows = _rows(doctor.checks(tmp_path / "no-seed-study"))
    assert rows["driver and torch"].status == "ok"
    assert rows["GPU 1"].status == "block" and "PROHIBITED".lower() in rows["GPU 1"].detail
    assert rows["GPU 1"].fix == f"nvidia-smi -i {config['gpus'][1]['uuid']} -c DEFAULT (root)"
    assert rows["CUDA_VISIBLE_DEVICES"].status == "ok" and config["gpus"][1]["uuid"] in rows["CUDA_VISIBLE_DEVICES"].detail
    assert rows["GPU processes"].status == "warn" and "pid 4000000 (900 MiB)" in rows["GPU processes"].detail
    assert rows["NVML fields"].status == "warn" and "power" in rows["NVML fields"].detail
    assert "processes (nvmlDeviceGetComputeRunningProcesses_v2)" not in rows["NVML fields"].detail  # answered
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    rows = _rows(doctor.checks(tmp_path / "no-seed-study"))
    assert rows["CUDA_VISIBLE_DEVICES"].status == "block" and "NVML sees 2" in rows["CUDA_VISIBLE_DEVICES"].detail
    assert "unset it" in rows["CUDA_VISIBLE_DEVICES"].fix and doctor.blocked(list(rows.values()))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    rows = _rows(doctor.checks(tmp_path / "no-seed-study"))
    assert rows["CUDA_VISIBLE_DEVICES"].status == "info" and "runs use the CPU" in rows["CUDA_VISIBLE_DEVICES"].detail
    assert environment.resolve_device("auto") == "cpu"  # an empty CUDA_VISIBLE_DEVICES means no GPU


def test_a_driver_older_than_torch_blocks_and_auto_falls_back(fake_nvml, cuda_torch, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_nvml(machine(1, cuda=11080))
    rows = _rows(doctor.checks(tmp_path / "none"))
    assert rows["driver and torch"].status == "block" and "too old" in rows["driver and torch"].detail
    assert environment.resolve_device("auto") == "cpu"
    with pytest.raises(Exception, match="driver is too old for this torch"):
        environment.resolve_device("cuda")
    fake_nvml(machine(1, cuda=12020))  # same major, older minor: minor version compatibility
    assert _rows(doctor.checks(tmp_path / "none"))["driver and torch"].status == "warn"
    assert environment.resolve_device("auto") == "cuda"


def test_the_seed_study_against_a_small_gpu(fake_nvml, cuda_torch, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake_nvml(machine(1, gpu0={"memory_total_mib": 16384}))
    row = _rows(doctor.checks())["seed study"]
    assert row.status == "warn" and " runs fit; e.g. " in row.detail and "too big: needs ~" in row.detail
    assert "--dry-run" in row.fix
