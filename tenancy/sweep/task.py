"""One run of a study, wherever it executes: in the sweep's own process, in a process pinned to
one GPU, or in a Slurm job-array task. Each checks for a complete run of the same scenario first
(resume), sets aside what else is there, runs, and returns its row for the study index; run
anywhere but in-process it also writes that row to `_tasks/<run>.json` itself.

    python -m tenancy.sweep.task SPEC.json      # what the local GPU pool starts, one per GPU
"""
from __future__ import annotations

import json
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from tenancy.core import results
from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TenancyError
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import accept_group_signals
from tenancy.gpu import devices, environment
from tenancy.harness.matrix import Expanded
from tenancy.harness.scenario import Scenario
from tenancy.sweep.index import write_task
from tenancy.sweep.plan import Overrides, Planned, plan
from tenancy.sweep.resume import existing_status, set_aside


def placement(device: str = "cuda") -> dict[str, Any]:
    """Where this process runs: node, the GPU a run here uses (by UUID; none on the CPU), the Slurm job."""
    card = devices.current(environment.nvml_gpus())[0] if device == "cuda" else None
    slurm = environment.slurm_job()
    return {"node": socket.gethostname(), "gpu_name": card.get("name") if card else None,
            "gpu_uuid": card.get("uuid") if card else None, "slurm_job_id": slurm.get("id")}


def plan_fields(p: Planned) -> dict[str, Any]:
    """The sweep.csv columns a run has from its plan, before it runs, whichever executor runs it."""
    s = p.scenario or p.run.scenario
    return dict(source=p.run.source, axes=p.run.axes, sharing=s.mode, processes=len(s.instances()),
                est_peak_mib=round(p.memory.get("peak_mib", 0.0), 1), run_dir=p.run.name)


def execute(p: Planned, study_dir: Path, row: dict[str, Any], on_event: Callable | None = None,
            on_start: Callable[[dict[str, Any]], None] | None = None) -> bool:
    """Run `p` into STUDY/<run> unless it is done already, updating `row`; True when it was resumed
    (found complete, not run)."""
    from tenancy.harness.runner import Runner

    r = p.run
    run_dir = study_dir / r.name
    row.update(plan_fields(p))
    if p.skip:
        row.update(status="skipped", message=p.skip)
        return False
    if existing_status(run_dir, p.scenario) == "complete":
        row.update(status="complete", message=row.get("message") or "already complete")
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        row["set_aside"] = str(set_aside(study_dir, run_dir).relative_to(study_dir))
    row.update(status="running", message="", started=results.utc_now(), finished=None, exit_code=None,
               **placement(p.scenario.device))
    if on_start:
        on_start(row)
    t0 = time.monotonic()
    runner = None
    try:
        runner = Runner(p.scenario, results.new_run_dir(run_dir, r.name), source=r.source, on_event=on_event)
        rc = runner.run()
    except TenancyError as err:
        rc, row["message"] = EXIT_FAILED, str(err)
    except KeyboardInterrupt:
        rc = EXIT_INTERRUPTED
    except Exception as err:  # a bug in one run must not lose the others
        rc, row["message"] = EXIT_FAILED, f"internal error: {type(err).__name__}: {err}"
    row.update(finished=results.utc_now(), wall_s=round(time.monotonic() - t0, 1), exit_code=rc,
               status={EXIT_OK: "complete", EXIT_INTERRUPTED: "interrupted"}.get(rc, "failed"))
    if rc == EXIT_FAILED and not row["message"] and runner is not None:
        row["message"] = runner.failure()
    return False


@dataclass
class TaskSpec:
    """Everything a task needs, plain enough to pickle (Slurm) or write as JSON (local pool)."""

    name: str
    scenario: dict[str, Any]  # as expanded, not resolved: the node resolves it for itself
    source: str
    axes: dict[str, str]
    study_dir: str
    overrides: dict[str, Any]
    executor: str

    @classmethod
    def of(cls, run: Expanded, study_dir: Path, ov: Overrides, executor: str) -> TaskSpec:
        return cls(run.name, run.scenario.model_dump(), run.source, dict(run.axes), str(study_dir.resolve()),
                   asdict(ov), executor)

    def expanded(self) -> Expanded:
        return Expanded(self.name, Scenario.model_validate(self.scenario), self.source, self.axes)


def run_task(spec: TaskSpec) -> dict[str, Any]:
    """Plan the run on this node, run it, write its row to the study; never raises."""
    study_dir = Path(spec.study_dir)
    ov = Overrides(**spec.overrides)
    row: dict[str, Any] = {"name": spec.name, "executor": spec.executor}
    try:
        accept_group_signals()  # a Ctrl-C held since our start arrives here, as "interrupted"
        (p,) = plan([spec.expanded()], ov.device, ov.iterations, ov.warmup, repeats=ov.repeats)
        execute(p, study_dir, row, on_start=lambda r: write_task(study_dir, r))
    except KeyboardInterrupt:
        row.update(status="interrupted", message="interrupted", finished=results.utc_now())
    except Exception as err:  # a refusal while planning on this node, or a bug: recorded, not lost
        row.update(status="failed", message=" ".join(str(err).split())[:300] or type(err).__name__,
                   finished=results.utc_now(), **placement())
    write_task(study_dir, row)
    return row


@exits_quickly
def main(argv: list[str]) -> int:
    spec = TaskSpec(**json.loads(Path(argv[0]).read_text()))
    row = run_task(spec)
    return {"complete": EXIT_OK, "skipped": EXIT_OK, "interrupted": EXIT_INTERRUPTED}.get(row["status"], EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
