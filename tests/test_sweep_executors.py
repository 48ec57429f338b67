"""Sweep executors without a cluster or a GPU: which GPUs a many-GPU node offers, the pool that
runs one run per GPU (never two on one), the Slurm resources of a run, and how the Slurm
executor reads what tasks and the queue say (ended without a result: failed, with its log)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import machine, tiny

from tenancy.core.errors import TenancyError
from tenancy.harness.matrix import Expanded
from tenancy.harness.scenario import parse_scenario
from tenancy.sweep import Study, plan
from tenancy.sweep.index import TASKS, write_task
from tenancy.sweep.local import run_pool, visible_gpus
from tenancy.sweep.plan import Overrides, plan_remote
from tenancy.sweep.task import TaskSpec

GPUS = [{"index": i, "name": "NVIDIA H100 80GB HBM3", "uuid": g["uuid"]} for i, g in enumerate(machine(8)["gpus"])]


def _run(name: str, **fields) -> Expanded:
    return Expanded(name, parse_scenario(dict(name=name, **fields)), "test")


def test_visible_gpus_by_index_uuid_or_prefix():
    uuids = [g["uuid"] for g in GPUS]
    assert [g["uuid"] for g in visible_gpus(GPUS, None)] == uuids
    assert [g["index"] for g in visible_gpus(GPUS, "3,1")] == [3, 1]
    assert [g["index"] for g in visible_gpus(GPUS, f"{uuids[5]},{uuids[2][:12]}")] == [5, 2]
    assert [g["index"] for g in visible_gpus(GPUS, "0,0,2")] == [0, 2]  # one GPU named twice counts once
    assert [g["index"] for g in visible_gpus(GPUS, "1,-1,2")] == [1]  # CUDA stops at an invalid entry
    assert visible_gpus(GPUS, "") == [] and visible_gpus([], None) == []


class FakeProc:
    """A task process that finishes after `polls` polls, writing its row (or not, as if killed)."""

    def __init__(self, spec: TaskSpec, uuid: str, busy: dict, polls: int, writes: bool) -> None:
        self.spec, self.uuid, self.busy, self.left, self.writes = spec, uuid, busy, polls, writes

    def poll(self) -> int | None:
        self.left -= 1
        if self.left > 0:
            return None
        if self.busy.get(self.uuid) == self.spec.name:
            del self.busy[self.uuid]
        if self.writes:
            write_task(Path(self.spec.study_dir), {"name": self.spec.name, "status": "complete", "gpu_uuid": self.uuid})
            return 0
        return 137


def test_pool_runs_one_run_per_gpu_and_never_two_on_one(tmp_path):
    """Eleven runs over four GPUs (of eight, as CUDA_VISIBLE_DEVICES=0,2,4,6 leaves them): each GPU
    takes the next run when it is free; at no moment do two runs hold one GPU; a task that dies
    without writing its row is recorded as failed with its log."""
    uuids = [g["uuid"] for g in visible_gpus(GPUS, "0,2,4,6")]
    specs = [TaskSpec.of(_run(f"r{i:02d}", device="cpu", tenants=[tiny("b", "bert-base")]), tmp_path, Overrides(),
                         "local") for i in range(11)]
    starts: list = []
    busy: dict[str, str] = {}
    most = [0]

    def launch(spec: TaskSpec, uuid: str) -> FakeProc:
        assert uuid not in busy, f"{spec.name} put on {uuid}, which runs {busy.get(uuid)}"
        busy[uuid] = spec.name
        most[0] = max(most[0], len(busy))
        starts.append((spec.name, uuid))
        return FakeProc(spec, uuid, busy, polls=1 + int(spec.name[1:]) % 3, writes=spec.name != "r07")

    done: list = []
    code = run_pool(specs, uuids, Study(tmp_path), launch=launch, on_done=done.append, poll_s=0)
    assert code == 1  # r07 failed
    assert [n for n, _ in starts] == [s.name for s in specs]  # in order, each once
    assert {u for _, u in starts} == set(uuids) and most[0] == len(uuids)  # every GPU used, all at once
    study = Study(tmp_path)
    rows = {r["name"]: r for r in study.data["runs"]}
    assert len(rows) == 11 and len(done) == 11
    assert all(rows[n]["status"] == "complete" for n in rows if n != "r07")
    assert all(rows[n]["gpu_uuid"] in uuids for n in rows)
    assert rows["r07"]["status"] == "failed" and rows["r07"]["exit_code"] == 137
    assert rows["r07"]["log"] == str(tmp_path.resolve() / TASKS / "r07.log")
    assert (tmp_path / "sweep.csv").exists()


def test_slurm_resources_give_each_run_its_gpu_or_its_node():
    slurm = pytest.importorskip("tenancy.sweep.slurm")
    runs = [_run("g", device="cuda", tenants=[tiny("b", "bert-base", copies=3)]),
            _run("c", device="cpu", tenants=[tiny("b", "bert-base")], repeats=1)]
    gpu_run, cpu_run = plan_remote(runs, Overrides())
    r = slurm.resources(gpu_run, slurm.Cluster())
    assert r["slurm_gres"] == "gpu:1" and r["cpus_per_task"] == 4  # a whole GPU, never a shard
    assert "slurm_exclusive" not in r and r["timeout_min"] % 15 == 0 and r["timeout_min"] >= 15
    c = slurm.resources(cpu_run, slurm.Cluster())
    assert c["slurm_exclusive"] is True and "slurm_gres" not in c  # a CPU measurement needs the cores
    assert c["mem_gb"] >= 1 and c["mem_gb"] & (c["mem_gb"] - 1) == 0  # a power of two: few job arrays
    assert slurm.resources(cpu_run, slurm.Cluster(timeout_min=7, mem_gb=3))["timeout_min"] == 7
    assert gpu_run.scenario.device == "cuda" and gpu_run.scenario.tenants[0].dtype == "float16"


def test_cluster_block_and_flags(tmp_path):
    slurm = pytest.importorskip("tenancy.sweep.slurm")
    path = tmp_path / "c.yaml"
    path.write_text("cluster: {partition: gpu, account: lab, array_parallelism: 8, additional: {reservation: r1}}\n")
    c = slurm.Cluster.read(str(path), partition="h100", qos=None)
    assert (c.partition, c.account, c.array_parallelism, c.additional) == ("h100", "lab", 8, {"reservation": "r1"})
    path.write_text("cluster: {partiton: gpu}\n")
    with pytest.raises(TenancyError, match="cluster.partiton: unknown field"):
        slurm.Cluster.read(str(path))


def test_slurm_update_reads_rows_and_the_queue(tmp_path, monkeypatch):
    """A task's own row wins; a task that left the queue without a final row failed, and its row
    points at its Slurm log; a waiting task is pending, or requeued when an attempt had started."""
    slurm = pytest.importorskip("tenancy.sweep.slurm")
    records = {n: {"job_id": f"7_{i}", "stdout": f"/logs/7_{i}_0_log.out", "submitted": 1}
               for i, n in enumerate(["done", "killed", "waiting", "again", "running"])}
    write_task(tmp_path, {"name": "done", "status": "complete"})
    write_task(tmp_path, {"name": "killed", "status": "running"})
    write_task(tmp_path, {"name": "again", "status": "running"})
    monkeypatch.setattr(slurm, "queue_states", lambda ids: {"7_0": "COMPLETED", "7_2": "PENDING",
                                                             "7_3": "REQUEUED", "7_4": "RUNNING"})
    study = Study(tmp_path)
    ended = slurm.update(study, records)
    rows = {r["name"]: r for r in Study(tmp_path).data["runs"]}
    assert rows["done"]["status"] == "complete" and rows["done"]["slurm_job_id"] == "7_0"
    assert rows["killed"]["status"] == "failed" and rows["killed"]["log"] == "/logs/7_1_0_log.out"
    assert "7_1 ended and left the queue" in rows["killed"]["message"]
    assert rows["waiting"]["status"] == "pending" and rows["again"]["status"] == "requeued"
    assert rows["running"]["status"] == "running"
    assert sorted(r["name"] for r in ended) == ["done", "killed"]
    assert slurm.update(study, records) == []  # reported once
    monkeypatch.setattr(slurm, "queue_states", lambda ids: None)  # squeue unreachable: nothing is guessed
    write_task(tmp_path, {"name": "waiting", "status": "running"})
    slurm.update(study, records)
    assert {r["name"]: r for r in study.data["runs"]}["waiting"]["status"] == "running"


def test_a_task_plans_and_records_its_run_on_its_node(tmp_path, monkeypatch):
    """What a Slurm task or a pinned process does, here in-process: a run the node cannot do is
    recorded as skipped with the reason; the row is the task's own file in the study."""
    from tenancy.sweep.task import run_task

    spec = TaskSpec.of(_run("m", device="cpu", sharing="mps", tenants=[tiny("b", "bert-base")]), tmp_path,
                       Overrides(iterations=2), "slurm")
    row = run_task(spec)
    assert row["status"] == "skipped" and row["message"].startswith("unavailable:")
    on_disk = json.loads((tmp_path / TASKS / "m.json").read_text())
    assert on_disk["status"] == "skipped" and on_disk["executor"] == "slurm"
    assert Study(tmp_path).merge_tasks()[0]["name"] == "m"
    (p,) = plan([spec.expanded()], None, 2, None)
    assert p.scenario.iterations == 2


def test_local_executor_pools_gpu_runs_over_the_visible_gpus(tmp_path, monkeypatch):
    """On a node with several GPUs visible, GPU runs go to the pool (one per GPU, by UUID) and CPU
    runs afterwards, one at a time in the sweep's process; with one GPU everything runs in-process."""
    from tenancy.cli import sweep
    from tenancy.gpu import environment
    from tenancy.sweep import local

    monkeypatch.setattr(environment, "nvml_gpus", lambda: GPUS[:4])
    monkeypatch.setattr(environment, "collect", lambda: {})
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"1,{GPUS[3]['uuid']}")
    calls: list = []
    monkeypatch.setattr(local, "run_pool", lambda specs, uuids, study, on_done=None:
                        calls.append(("pool", [s.name for s in specs], uuids)) or 0)
    monkeypatch.setattr(local, "run_study",
                        lambda plans, *a, **k: calls.append(("inline", [p.run.name for p in plans])) or 0)
    plans = plan_remote([_run("g1", device="cuda", tenants=[tiny("b", "bert-base")]),
                         _run("c", device="cpu", tenants=[tiny("b", "bert-base")]),
                         _run("g2", device="cuda", tenants=[tiny("b", "bert-base")])], Overrides())
    assert sweep.run_local(plans, tmp_path, Overrides(), {}) == 0
    assert calls == [("pool", ["g1", "g2"], [GPUS[1]["uuid"], GPUS[3]["uuid"]]), ("inline", ["c"])]
    calls.clear()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    sweep.run_local(plans, tmp_path, Overrides(), {})
    assert calls == [("inline", ["g1", "c", "g2"])]
