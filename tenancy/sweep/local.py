"""The local executor. On a CPU or one GPU: runs one after another in this process (they share
the device). On a node with several GPUs: one run per GPU at once, each in its own process pinned
to its GPU by UUID (CUDA_VISIBLE_DEVICES=<UUID>), never two runs on one GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Protocol

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from tenancy.core.signals import children_start_held
from tenancy.gpu import devices, environment
from tenancy.sweep.index import TASKS, Study, read_tasks
from tenancy.sweep.plan import Planned
from tenancy.sweep.task import TaskSpec, execute

Done = Callable[[dict[str, Any]], None]


def run_study(plans: list[Planned], study_dir: Path, overrides: dict[str, Any],
              on_run: Callable[[Planned, int], Callable] | None = None, on_done: Done | None = None) -> int:
    """Run every planned run into `study_dir`, one after another in this process; the exit code."""
    study = Study(study_dir)
    study.data["overrides"] = overrides
    study.data["environment"] = environment.collect()
    code = EXIT_OK
    for i, p in enumerate(plans):
        row = study.row(p.run.name)
        resumed = execute(p, study_dir, row, on_run(p, i) if on_run and not p.skip else None,
                          on_start=lambda _: study.write())
        study.write()
        if on_done:
            on_done(row | {"resumed": True} if resumed else row)
        if row["status"] == "interrupted":
            return EXIT_INTERRUPTED
        if row["status"] == "failed":
            code = EXIT_FAILED
    return code


def visible_gpus(gpus: list[dict[str, Any]], visible: str | None) -> list[dict[str, Any]]:
    """Every GPU CUDA_VISIBLE_DEVICES=`visible` names (unset: all), each resolved like a run's GPU;
    an entry that names no GPU is left out, one named twice counts once."""
    if visible is None:
        return list(gpus)
    out: list[dict[str, Any]] = []
    for entry in visible.split(","):
        card, _ = devices.choose(gpus, entry.strip())
        if card is None:
            if entry.strip() in devices.HIDDEN:
                break  # CUDA stops at the first invalid entry
            continue
        if all(card["uuid"] != c["uuid"] for c in out):
            out.append(card)
    return out


class Proc(Protocol):
    def poll(self) -> int | None: ...


Launch = Callable[[TaskSpec, str], Proc]


def launch_pinned(spec: TaskSpec, uuid: str) -> subprocess.Popen:
    """A task in its own process that sees one GPU, named by UUID."""
    folder = Path(spec.study_dir) / TASKS
    (folder / "specs").mkdir(parents=True, exist_ok=True)
    path = folder / "specs" / f"{spec.name}.json"  # not a row: outside the rows' folder level
    path.write_text(json.dumps(asdict(spec), default=str))
    env = {**os.environ, **devices.process_env({"uuid": uuid})}
    log = open(folder / f"{spec.name}.log", "ab")
    with children_start_held():  # the task takes a Ctrl-C once it can write its row
        return subprocess.Popen([sys.executable, "-m", "tenancy.sweep.task", str(path)], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def run_pool(specs: list[TaskSpec], uuids: list[str], study: Study, launch: Launch = launch_pinned,
             on_done: Done | None = None, poll_s: float = 0.5) -> int:
    """Run the tasks over the GPUs: each free GPU takes the next task, a GPU runs one task at a
    time. Rows come back through the tasks' own records; the exit code of the lot."""
    if not uuids:
        raise ValueError("run_pool needs at least one GPU")
    pending, free = list(specs), list(uuids)
    running: dict[str, tuple[TaskSpec, Proc]] = {}  # uuid -> task
    code = EXIT_OK
    try:
        while pending or running:
            while pending and free:
                uuid = free.pop(0)
                spec = pending.pop(0)
                (study.path / TASKS / f"{spec.name}.json").unlink(missing_ok=True)  # an older attempt's row
                running[uuid] = (spec, launch(spec, uuid))
            time.sleep(poll_s)
            for uuid, (spec, proc) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                del running[uuid]
                free.append(uuid)
                row = _finished(study, spec, rc, uuid)
                code = max(code, EXIT_FAILED if row["status"] == "failed" else EXIT_OK)
                if on_done:
                    on_done(row)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED  # the tasks got the same SIGINT (one process group) and write their rows
        for _, proc in running.values():
            while proc.poll() is None:
                time.sleep(poll_s)
        study.merge_tasks()
    study.write()
    return code


def _finished(study: Study, spec: TaskSpec, rc: int, uuid: str) -> dict[str, Any]:
    study.merge_tasks()
    row = study.row(spec.name)
    if not any(r["name"] == spec.name for r in read_tasks(study.path)) or row.get("status") == "running":
        log = Path(spec.study_dir) / TASKS / f"{spec.name}.log"
        row.update(status="failed", exit_code=rc, gpu_uuid=uuid, log=str(log),
                   message=f"the task process exited with {rc} before writing its result")
    study.write()
    return row
