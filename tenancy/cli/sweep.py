"""`tenancy sweep`: the command line over discovery, planning, the executors and the index."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import pandas as pd
from rich.console import Console
from rich.table import Table

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TenancyError
from tenancy.gpu import environment
from tenancy.sweep.discover import expand_all, select, with_control
from tenancy.sweep.index import STUDY_JSON, SWEEP_CSV, Study
from tenancy.sweep.plan import Overrides, Planned, dry_run_table, plan, plan_remote
from tenancy.sweep.progress import Bars, console
from tenancy.sweep.resume import existing_status
from tenancy.sweep.task import TaskSpec, plan_fields

STATUS_COLUMNS = ("name", "status", "node", "gpu_name", "slurm_job_id", "wall_s", "message", "log")


def default_study_dir(sources: list[str]) -> Path:
    stem = Path(sources[0]).resolve().name.removesuffix(".yaml").removesuffix(".yml")
    return Path("results") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _slurm():
    try:
        from tenancy.sweep import slurm
    except ImportError:
        raise TenancyError("--executor slurm needs submitit: pip install 'tenancy[slurm]'") from None
    return slurm


def status(study_dir: Path) -> int:
    """Merge what tasks and Slurm say into the index and print one row per run; the exit code:
    1 when a run failed, else 0 (runs still queued or running included)."""
    if not (study_dir / STUDY_JSON).exists():
        raise TenancyError(f"{study_dir}: not a study directory (no {STUDY_JSON})")
    study = Study(study_dir)
    records = {}
    if (study_dir / "_slurm" / "jobs.json").exists():
        slurm = _slurm()
        records = slurm.read_jobs(study_dir)
        slurm.update(study, records)
    else:
        study.merge_tasks()
        study.write()
    rows = study.data["runs"]
    table = Table(title=f"{study_dir}: {len(rows)} run(s)")
    for col in STATUS_COLUMNS:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in STATUS_COLUMNS))
    Console(width=None if console.is_terminal else 200).print(table)
    counts = pd.Series([r.get("status", "?") for r in rows]).value_counts().to_dict()
    console.print(", ".join(f"{v} {k}" for k, v in counts.items()) + f"; index in {study_dir / SWEEP_CSV}")
    return EXIT_FAILED if any(r.get("status") in ("failed", "interrupted") for r in rows) else EXIT_OK


def run_local(plans: list[Planned], study_dir: Path, ov: Overrides, record: dict[str, Any]) -> int:
    """In this process one after another, or one run per GPU at once on a many-GPU node."""
    from tenancy.sweep import local

    gpus = local.visible_gpus(environment.nvml_gpus(), os.environ.get("CUDA_VISIBLE_DEVICES"))
    on_gpu = any(p.scenario.device == "cuda" for p in plans if not p.skip)
    bars = Bars(len(plans))
    if not on_gpu or len(gpus) < 2:
        with bars.progress:
            return local.run_study(plans, study_dir, record, bars.start_run, bars.done)
    console.print(f"local: {len(gpus)} GPUs, one run on each at once: " + ", ".join(g["uuid"] for g in gpus))
    study = Study(study_dir)
    study.data.update(overrides=record, environment=environment.collect())
    pooled = [p for p in plans if p.scenario.device == "cuda" and not p.skip]
    rest = [p for p in plans if p not in pooled]  # CPU runs need the host to themselves: afterwards, in turn
    specs = [TaskSpec.of(p.run, study_dir, ov, "local") for p in pooled]
    with bars.progress:
        code = local.run_pool(specs, [g["uuid"] for g in gpus], study, on_done=bars.done)
        if code == EXIT_INTERRUPTED or not rest:
            return code
        return max(code, local.run_study(rest, study_dir, record, bars.start_run, bars.done))


def run_slurm(plans: list[Planned], study_dir: Path, ov: Overrides, record: dict[str, Any], cluster: Any,
              no_wait: bool) -> int:
    slurm = _slurm()
    study = Study(study_dir)
    study.data.update(overrides=record, cluster=asdict(cluster))
    bars = Bars(len(plans))
    queued = slurm.read_jobs(study_dir)
    states = slurm.queue_states([r["job_id"] for r in queued.values()]) or {}
    todo, specs = [], []
    for p in plans:
        row = study.row(p.run.name)
        row.update(plan_fields(p))
        if existing_status(study_dir / p.run.name, p.scenario) == "complete":
            row.update(status="complete", message=row.get("message") or "already complete")
            bars.done(row | {"resumed": True})
            continue
        job = queued.get(p.run.name, {}).get("job_id")
        if job and states.get(job) in slurm.WAITING | {"RUNNING", "COMPLETING"}:
            console.print(f"{p.run.name}: already queued as Slurm job {job}; not submitted again",
                          markup=False, highlight=False)
            continue
        row.update(status="submitted", message="", executor="slurm")
        todo.append(p)
        specs.append(TaskSpec.of(p.run, study_dir, ov, "slurm"))
    study.write()
    try:
        records = slurm.submit(todo, specs, study_dir, cluster) if todo else slurm.read_jobs(study_dir)
    except TenancyError as err:  # nothing was queued: the rows say so, not "submitted"
        for p in todo:
            study.row(p.run.name).update(status="not submitted", message=str(err))
        study.write()
        raise
    arrays = sorted({records[s.name]["job_id"].split("_")[0] for s in specs})
    console.print(f"slurm: {len(todo)} run(s) submitted as job array(s) {', '.join(arrays) or '-'}; logs under "
                  f"{study_dir / slurm.JOBS}", markup=False, highlight=False)
    if no_wait:
        console.print(f"not waiting: `tenancy sweep --status {study_dir}` reports on them", markup=False,
                      highlight=False)
        slurm.update(study, records)
        return EXIT_OK
    try:
        with bars.progress:
            return slurm.wait(study, {n: records[n] for n in records if n in {p.run.name for p in plans}}, bars.done)
    except KeyboardInterrupt:
        console.print(f"stopped watching; the jobs go on: `tenancy sweep --status {study_dir}`", markup=False,
                      highlight=False)
        return EXIT_INTERRUPTED


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="SUITE_OR_FILES...")
@click.option("--out", type=click.Path(file_okay=False), help="Study directory (default results/<suite>-<time>/); "
              "run again with the same --out to resume.")
@click.option("--dry-run", is_flag=True, help="List the runs, their estimated GPU and host memory and what cannot "
              "run here; run nothing.")
@click.option("--iterations", type=click.IntRange(min=1), help="Override every scenario's iterations.")
@click.option("--warmup", type=click.IntRange(min=0), help="Override every scenario's warm-up iterations.")
@click.option("--repeats", type=click.IntRange(min=1), help="Override every scenario's repeats.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Override every scenario's device.")
@click.option("--only", multiple=True, metavar="PATTERN", help="Only the runs whose names match this shell "
              "pattern (repeatable), e.g. --only 'pair.tenants=bert+*' --only 'control*'.")
@click.option("--control/--no-control", default=True, show_default=True,
              help="Run an A/A control first (the first tenant alone in both phases): what no effect looks like.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: this machine (one run at a time; one per GPU on a many-GPU node). slurm: one job-array "
                   "task per run (submitit).")
@click.option("--no-wait", is_flag=True, help="slurm: submit and return; `tenancy sweep --status STUDY_DIR` later.")
@click.option("--status", "show_status", is_flag=True, help="Report on the study directory given (or --out): "
              "each run's status, node, GPU, Slurm job and log.")
@click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False), help="slurm: a YAML file with a "
              "`cluster:` block (partition, account, qos, constraint, array_parallelism, timeout_min, mem_gb, "
              "cpus_per_run, additional).")
@click.option("--partition", help="slurm: partition.")
@click.option("--account", help="slurm: account.")
@click.option("--qos", help="slurm: quality of service.")
@click.option("--constraint", help="slurm: node features, e.g. h100.")
@click.option("--array-parallelism", type=click.IntRange(min=1), help="slurm: array tasks running at once, at most.")
@click.option("--time-min", type=click.IntRange(min=1), help="slurm: time limit per run (default: from its estimate).")
@click.option("--mem-gb", type=click.FloatRange(min=0.5), help="slurm: memory per run (default: from its estimate).")
def sweep(sources: tuple[str, ...], out: str | None, dry_run: bool, iterations: int | None, warmup: int | None,
          repeats: int | None, device: str | None, only: tuple[str, ...], control: bool, executor: str,
          no_wait: bool, show_status: bool, cluster_file: str | None, partition: str | None, account: str | None,
          qos: str | None, constraint: str | None, array_parallelism: int | None, time_min: int | None,
          mem_gb: float | None) -> None:
    """Run every scenario (matrices expanded) of suites (directories) and files into one study."""
    if show_status:
        sys.exit(status(Path(out or sources[0])))
    if no_wait and executor != "slurm":
        raise TenancyError("--no-wait applies to --executor slurm")
    runs = expand_all(list(sources))
    runs = select(with_control(runs) if control else runs, list(only))  # the same control for any subset
    ov = Overrides(device, iterations, warmup, repeats)
    cluster = None
    if executor == "slurm":
        cluster = _slurm().Cluster.read(cluster_file, partition=partition, account=account, qos=qos,
                                        constraint=constraint, array_parallelism=array_parallelism,
                                        timeout_min=time_min, mem_gb=mem_gb)
        plans = plan_remote(runs, ov)
    else:
        plans = plan(runs, device, iterations, warmup, dry_run, repeats=repeats)
    study_dir = Path(out) if out else default_study_dir(list(sources))
    if dry_run:
        Console(width=None if console.is_terminal else 200).print(dry_run_table(plans, study_dir if out else None))
        runnable = [p for p in plans if not p.skip]
        console.print(f"{len(runnable)} of {len(plans)} run(s) would run into {study_dir}")
        if executor == "slurm":
            groups = pd.Series([str(_slurm().resources(p, cluster)) for p in runnable]).value_counts()
            for res, n in groups.items():
                console.print(f"slurm: a job array of {n} run(s) with {res}", markup=False, highlight=False,
                              soft_wrap=True)
        return
    if study_dir.exists() and not study_dir.is_dir():
        raise TenancyError(f"{study_dir}: exists and is not a directory")
    study_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]sweep[/]: {len(plans)} run(s) -> {study_dir}  (resume: same command with --out {study_dir})")
    t0 = time.monotonic()
    record = ov.record(list(sources)) | {"executor": executor}
    if executor == "slurm":
        code = run_slurm(plans, study_dir, ov, record, cluster, no_wait)
        if no_wait:
            sys.exit(code)
    else:
        code = run_local(plans, study_dir, ov, record)
    rows = Study(study_dir).data["runs"]
    names = {p.run.name for p in plans}
    counts = pd.Series([r["status"] for r in rows if r["name"] in names]).value_counts().to_dict()
    console.print(f"sweep {'interrupted' if code == EXIT_INTERRUPTED else 'done'} in "
                  f"{time.monotonic() - t0:.0f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f"; index in {study_dir / SWEEP_CSV}")
    sys.exit(code)
