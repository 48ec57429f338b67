"""The Slurm executor, on submitit: one job-array task per run.

A run that needs a GPU asks for `--gres=gpu:1`, the whole GPU (never Slurm shards or MPS gres: a
neighbour on the same card would contaminate the measurement); a CPU run asks for its node
exclusively, for the same reason. Memory and time limits come from the run's estimate. Each task
writes its run directory and its row (`_tasks/<run>.json`) into the study directory, which must be
on a file system the nodes share; `_slurm/jobs.json` remembers the jobs so that `tenancy sweep
--status` can report on them later. A task that is preempted or times out is requeued by
submitit (it is Checkpointable: the run starts again, its partial directory set aside); a task
that ends without a row is recorded as failed with the path of its Slurm log.
"""
from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit

from tenancy.core import results
from tenancy.core.errors import EXIT_FAILED, EXIT_OK, TenancyError
from tenancy.sweep.index import Study
from tenancy.sweep.plan import Planned
from tenancy.sweep.task import TaskSpec, run_task

JOBS = "_slurm"
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "OUT_OF_MEMORY", "NODE_FAIL",
         "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"}
DONE = {"complete", "skipped", "failed", "interrupted"}  # task rows that end a run's attempt
MINUTES_PER_LAUNCH = 3.0  # process start, model build and warm-up of a full-size model, generously


@dataclass
class Cluster:
    """Where and how the jobs run: flags of `tenancy sweep`, or the `cluster:` block of --cluster FILE."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 64  # array tasks running at once, at most
    timeout_min: int | None = None  # None: from the run's estimate
    mem_gb: float | None = None  # None: from the run's estimate
    cpus_per_run: int | None = None  # GPU runs; None: one per tenant process, plus one
    additional: dict[str, Any] = field(default_factory=dict)  # any other sbatch option

    @classmethod
    def read(cls, path: str | None, **flags: Any) -> Cluster:
        data: dict[str, Any] = {}
        if path:
            import yaml

            try:
                raw = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as err:
                raise TenancyError(f"{path}: unreadable cluster file ({' '.join(str(err).split())[:160]})") from None
            data = raw.get("cluster", raw) if isinstance(raw, dict) else None
            if not isinstance(data, dict):
                raise TenancyError(f"{path}: expected a `cluster:` mapping")
            unknown = sorted(set(data) - set(cls.__dataclass_fields__))
            if unknown:
                raise TenancyError(f"{path}: cluster.{unknown[0]}: unknown field; known: "
                                   + ", ".join(cls.__dataclass_fields__))
        data.update({k: v for k, v in flags.items() if v is not None})
        return cls(**data)


def resources(p: Planned, c: Cluster) -> dict[str, Any]:
    """submitit parameters of one run: its GPU (or its node), memory and time limits."""
    s = p.scenario
    launches = s.repeats * (len(s.distinct()) + (0 if s.mode == "exclusive" else 1))
    # Rounded up to 15 min x 2^k and 2^k GB, so that runs of a study share a few job arrays.
    minutes = c.timeout_min or _bucket(1.5 * launches * (MINUTES_PER_LAUNCH + s.min_duration_s / 60) / 15) * 15
    mem = c.mem_gb or _bucket(1.25 * p.memory.get("host_peak_mib", 4096) / 1024 + 0.5)
    params: dict[str, Any] = {"timeout_min": int(minutes), "mem_gb": mem}
    if s.device == "cuda":
        params.update(slurm_gres="gpu:1", cpus_per_task=c.cpus_per_run or len(s.instances()) + 1)
    else:
        params.update(slurm_exclusive=True)  # a CPU measurement needs the cores to itself
    return params


def _bucket(x: float) -> int:
    """The smallest power of two >= x (at least 1)."""
    return 1 << max(0, math.ceil(math.log2(max(x, 1.0))))


class SlurmTask(submitit.helpers.Checkpointable):
    """The job-array function: run one task. Checkpointable, so that submitit requeues it when the
    job is preempted or times out (the run then starts again; nothing finished is redone)."""

    def __call__(self, spec: TaskSpec) -> dict[str, Any]:
        return run_task(spec)


def submit(plans: list[Planned], specs: list[TaskSpec], study_dir: Path, c: Cluster) -> dict[str, dict[str, Any]]:
    """Submit the runs as job arrays (one per distinct set of resources); their records."""
    logging.getLogger("submitit").setLevel(logging.ERROR)  # sacct may be off (no accounting): not our news
    groups: dict[str, list[tuple[Planned, TaskSpec]]] = {}
    for p, spec in zip(plans, specs):
        groups.setdefault(json.dumps(resources(p, c), sort_keys=True), []).append((p, spec))
    records = read_jobs(study_dir)
    for key, members in groups.items():
        ex = submitit.AutoExecutor(folder=study_dir / JOBS / "%j", cluster="slurm")
        extra = {k: v for k, v in (("partition", c.partition), ("account", c.account), ("qos", c.qos),
                                   ("constraint", c.constraint)) if v}
        ex.update_parameters(name=f"tenancy-{study_dir.name}", slurm_array_parallelism=c.array_parallelism,
                             **json.loads(key), **{f"slurm_{k}": v for k, v in extra.items()},
                             **({"slurm_additional_parameters": c.additional} if c.additional else {}))
        try:
            jobs = ex.map_array(SlurmTask(), [spec for _, spec in members])
        except Exception as err:  # sbatch refused (no such partition, limits): one line
            raise TenancyError(f"sbatch refused the job array: {' '.join(str(err).split())[:300]}") from None
        for (p, spec), job in zip(members, jobs):
            records[spec.name] = {"job_id": job.job_id, "stdout": str(job.paths.stdout),
                                  "stderr": str(job.paths.stderr), "submitted": time.time_ns(),
                                  "resources": json.loads(key)}
    write_jobs(study_dir, records)
    return records


def read_jobs(study_dir: Path) -> dict[str, dict[str, Any]]:
    path = study_dir / JOBS / "jobs.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_jobs(study_dir: Path, records: dict[str, dict[str, Any]]) -> None:
    (study_dir / JOBS).mkdir(parents=True, exist_ok=True)
    results.write_json(study_dir / JOBS / "jobs.json", records)


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """Slurm's state of each job-array task (`<array>_<task>` -> RUNNING, COMPLETED, ...), finished
    ones included while Slurm remembers them; None when squeue cannot be asked."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(arrays)],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None
    return dict(line.split()[:2] for line in out.stdout.splitlines() if len(line.split()) >= 2)


def update(study: Study, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the tasks' rows and Slurm's states into the index; the rows that reached an end now."""
    before = {r["name"]: (r.get("status"), r.get("task_written")) for r in study.data["runs"]}
    study.merge_tasks()
    states = queue_states([r["job_id"] for r in records.values()])
    for name, rec in records.items():
        row = study.row(name)
        state = (states or {}).get(rec["job_id"])
        row.update(slurm_job_id=row.get("slurm_job_id") or rec["job_id"], log=rec["stdout"])
        written = (row.get("task_written") or 0) > rec["submitted"]
        if written and row.get("status") in DONE:
            continue
        row["slurm_state"] = state
        if states is None:
            continue  # cannot tell: leave the row as it is
        if state is None or state in FINAL:  # gone from the queue, or ended without a final row
            row.update(status="failed", finished=row.get("finished") or results.utc_now(),
                       message=f"Slurm job {rec['job_id']} ended {state or 'and left the queue'} without "
                               f"finishing the run; see its log")
        elif state in WAITING:
            row["status"] = "requeued" if written else "pending"  # written: an attempt started before
        elif not written:
            row["status"] = state.lower()
    study.write()
    return [r for r in study.data["runs"] if r["name"] in records and r.get("status") in DONE
            and before.get(r["name"]) != (r.get("status"), r.get("task_written"))]


def wait(study: Study, records: dict[str, dict[str, Any]], on_done: Callable[[dict[str, Any]], None] | None = None,
         poll_s: float = 2.0) -> int:
    """Watch until every submitted run has ended; the sweep's exit code."""
    while True:
        for row in update(study, records):
            if on_done:
                on_done(row)
        rows = [study.row(n) for n in records]
        if all(r.get("status") in DONE for r in rows):
            return EXIT_FAILED if any(r["status"] in ("failed", "interrupted") for r in rows) else EXIT_OK
        time.sleep(poll_s)
