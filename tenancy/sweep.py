"""`tenancy sweep`: expand scenario files and suites into runs, and run them into one study.

A study directory holds one run directory per expanded scenario (named after the run) plus
`study.json` and `sweep.csv`, one row per run with its status. A run whose directory already
holds a complete manifest for the same scenario is skipped, so an interrupted sweep resumes by
running the same command again; anything else found there (a partial, failed or outdated run) is
moved to `_aside/` first, never mixed with the new samples. One failing run does not stop the
others. Runs go one after another: they share the device.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click
import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenancy import environment, preflight, results
from tenancy.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, TenancyError
from tenancy.matrix import Expanded, expand_file
from tenancy.scenario import Scenario, Timeslice, stored_scenario

STUDY_JSON, SWEEP_CSV, ASIDE = "study.json", "sweep.csv", "_aside"
SCHEMA_VERSION = 1
IGNORED_SCENARIO_KEYS = ("description",)  # not part of what was measured

console = Console(stderr=True)


@dataclass
class Planned:
    """One expanded run, resolved for this machine, with what stops it from running (if anything)."""

    run: Expanded
    scenario: Scenario | None = None  # resolved
    memory: dict[str, Any] = field(default_factory=dict)
    skip: str = ""  # why it cannot run here ("" when it can)


def scenario_files(sources: list[str]) -> list[Path]:
    """Files named, and every *.yaml / *.yml under the directories named (sorted)."""
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                raise TenancyError(f"{p}: no scenario files (*.yaml) in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise TenancyError(f"{p}: no such scenario file or suite directory")
    return list(dict.fromkeys(files))


def expand_all(sources: list[str]) -> list[Expanded]:
    runs = [r for f in scenario_files(sources) for r in expand_file(f)]
    seen: dict[str, str] = {}
    for r in runs:
        if r.name in seen:
            raise TenancyError(f"{r.source}: run name {r.name!r} is also defined in {seen[r.name]}; "
                               "names must be unique within a sweep")
        seen[r.name] = r.source
    return runs


def plan(runs: list[Expanded], device: str | None, iterations: int | None, warmup: int | None,
         dry_run: bool = False) -> list[Planned]:
    """Resolve every run for this machine and decide which cannot run here (and why)."""
    from tenancy import sharing
    from tenancy.runner import resolve, resolve_on

    gpus = environment.nvml_gpus()
    host = environment.host_memory_mib()["available_mib"]
    params: dict[tuple[str, str], int] = {}
    out = []
    for r in runs:
        p = Planned(r)
        try:
            p.scenario = resolve(r.scenario, device, iterations, warmup)
        except TenancyError:
            if not (dry_run and (device or r.scenario.device) == "cuda"):
                raise
            p.scenario = resolve_on("cuda", r.scenario, iterations, warmup)  # planning a GPU study on a laptop
            p.skip = "no GPU here: capacity not checked"
        why, p.memory = preflight.refusal(p.scenario, gpus, host, params)
        if not p.skip:
            try:
                sharing.get(p.scenario.mode).check(p.scenario, p.scenario.device)
            except TenancyError as err:
                p.skip = f"unavailable: {err}"
        p.skip = p.skip or why or ("autoscale scenario: run it with tenancy scale" if r.scenario.autoscale else "")
        out.append(p)
    return out


CONTROL_PREFIX = "control"


def with_control(runs: list[Expanded]) -> list[Expanded]:
    """The study's A/A control first: the first tenant of the first run, one copy, whose shared
    phase is the same work alone again, with that run's protocol. Its slowdown interval shows
    what "no effect" looks like on this machine; a study that has a control already gets none."""
    if not runs or any(r.name.startswith(CONTROL_PREFIX) for r in runs):
        return runs
    first = runs[0].scenario
    tenant = first.tenants[0].model_copy(update={"copies": 1})
    name = f"{CONTROL_PREFIX}-aa.{tenant.name}"
    scenario = first.model_copy(update={"name": name, "sharing": Timeslice(), "tenants": [tenant], "autoscale": None,
                                        "description": "A/A control: the same work alone in both phases"})
    return [Expanded(name, Scenario.model_validate(scenario.model_dump()), "(A/A control added by tenancy sweep)",
                     {"control": "aa"}), *runs]


def _normalised(scenario: dict[str, Any]) -> dict[str, Any]:
    data = stored_scenario(json.loads(json.dumps(scenario, default=str)))
    return {k: v for k, v in data.items() if k not in IGNORED_SCENARIO_KEYS}


def existing_status(run_dir: Path, scenario: Scenario) -> str:
    """`complete` (same scenario, done), `absent`, or why what is there must be set aside."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "absent"
    try:
        manifest = json.loads((run_dir / results.MANIFEST).read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    status = manifest.get("status")
    if status != "complete":
        return f"status {status}"
    changed = _changed(_normalised(manifest.get("scenario") or {}), _normalised(scenario.model_dump()))
    return "complete" if changed is None else f"measured with a different {changed}"


def _changed(old: Any, new: Any, path: str = "") -> str | None:
    """The first field path whose value differs; fields the old run did not record (added to
    the tool since, at their defaults) are not differences."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if k in new or old[k] is not None:
                found = _changed(old[k], new.get(k), f"{path}.{k}" if path else k)
                if found:
                    return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return next((f for o, n in zip(old, new) if (f := _changed(o, n, path))), None)
    return None if old == new else path


def set_aside(study: Path, run_dir: Path) -> Path:
    """Move an unusable run directory to STUDY/_aside/<name>.<n>; nothing is deleted."""
    aside = study / ASIDE
    aside.mkdir(exist_ok=True)
    for n in range(1, 10000):
        dest = aside / f"{run_dir.name}.{n}"
        if not dest.exists():
            shutil.move(str(run_dir), str(dest))
            return dest
    raise TenancyError(f"{aside}: too many set-aside copies of {run_dir.name}")


class Study:
    """The study directory's index: study.json (full) and sweep.csv (one row per run)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "created": results.utc_now(), "runs": []}
        index = path / STUDY_JSON
        if index.exists():
            try:
                self.data = json.loads(index.read_text())
            except ValueError:
                raise TenancyError(f"{index}: unreadable study index; move it away to start afresh") from None

    def row(self, name: str) -> dict[str, Any]:
        for r in self.data["runs"]:
            if r["name"] == name:
                return r
        row: dict[str, Any] = {"name": name}
        self.data["runs"].append(row)
        return row

    def write(self) -> None:
        self.data["updated"] = results.utc_now()
        self.path.mkdir(parents=True, exist_ok=True)
        results.write_json(self.path / STUDY_JSON, self.data)
        flat = pd.DataFrame([{k: v for k, v in r.items() if k != "axes"} |
                             {f"axis:{k}": v for k, v in (r.get("axes") or {}).items()}
                             for r in self.data["runs"]])
        results.write_table(self.path / SWEEP_CSV, flat)


def run_study(plans: list[Planned], study_dir: Path, overrides: dict[str, Any],
              on_run: Callable[[Planned, int], Callable] | None = None,
              on_done: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run every planned run into `study_dir`; returns the sweep's exit code."""
    from tenancy.runner import Runner

    study = Study(study_dir)
    study.data["overrides"] = overrides
    study.data["environment"] = environment.collect()
    code = EXIT_OK
    for i, p in enumerate(plans):
        r = p.run
        row = study.row(r.name)
        run_dir = study_dir / r.name
        row.update(source=r.source, axes=r.axes, sharing=(p.scenario or r.scenario).mode,
                   processes=len(r.scenario.instances()), est_peak_mib=round(p.memory.get("peak_mib", 0.0), 1),
                   run_dir=r.name)
        if p.skip:
            row.update(status="skipped", message=p.skip)
            study.write()
            _notify(on_done, row)
            continue
        state = existing_status(run_dir, p.scenario)
        if state == "complete":
            row.update(status="complete", message=row.get("message") or "already complete")
            study.write()
            _notify(on_done, row | {"resumed": True})
            continue
        if state != "absent":
            moved = set_aside(study_dir, run_dir)
            row["set_aside"] = str(moved.relative_to(study_dir))
        row.update(status="running", message="", started=results.utc_now(), finished=None, exit_code=None)
        study.write()
        t0 = time.monotonic()
        runner = None
        try:
            runner = Runner(p.scenario, results.new_run_dir(run_dir, r.name), source=r.source,
                            on_event=on_run(p, i) if on_run else None)
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
        study.write()
        _notify(on_done, row)
        if rc == EXIT_INTERRUPTED:
            return EXIT_INTERRUPTED
        if rc != EXIT_OK:
            code = EXIT_FAILED
    return code


def _notify(fn: Callable | None, row: dict[str, Any]) -> None:
    if fn:
        fn(row)


def default_study_dir(sources: list[str]) -> Path:
    stem = Path(sources[0]).resolve().name.removesuffix(".yaml").removesuffix(".yml")
    return Path("results") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def dry_run_table(plans: list[Planned], study_dir: Path | None) -> Table:
    dev = plans[0].scenario.device if plans else "?"
    table = Table(title=f"{len(plans)} run(s), device {dev}")
    sizes = ("est. peak memory", "weights", "host memory")
    for col in ("#", "run", "sharing", "procs", *sizes, "status"):
        table.add_column(col, justify="right" if col in ("#", "procs", *sizes) else "left", no_wrap=col != "status")
    for i, p in enumerate(plans, 1):
        status = p.skip or "will run"
        if not p.skip and study_dir is not None and existing_status(study_dir / p.run.name, p.scenario) == "complete":
            status = "complete (skipped)"
        table.add_row(str(i), p.run.name, p.scenario.mode, str(len(p.scenario.instances())),
                      f"{p.memory['peak_mib'] / 1024:.2f} GiB", f"{p.memory['weights_mib'] / 1024:.2f} GiB",
                      f"{p.memory['host_peak_mib'] / 1024:.2f} GiB", status)
    return table


class _Bars:
    """Two rich bars: runs done of the sweep, and iterations measured in the current run."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console,
                                 disable=not console.is_terminal)
        self.runs = self.progress.add_task("sweep", total=total, state="")
        self.current = self.progress.add_task("run", total=1, state="", visible=False)
        self.counts: dict[str, int] = {}

    def start_run(self, p: Planned, i: int) -> Callable[[str, str, object], None]:
        s = p.scenario
        per = len(s.distinct()) + (0 if s.mode == "exclusive" else len(s.instances()))
        self.counts = {}
        self.iterations = s.iterations
        self.progress.update(self.current, description=f"  {p.run.name}", total=per * s.repeats * s.iterations,
                             completed=0, state="starting", visible=True)
        return self.event

    def event(self, key: str, kind: str, value: object) -> None:
        if kind == "progress":
            self.counts[key] = min(int(value), self.iterations)
        elif kind == "samples" and value == "ok":
            self.counts[key] = self.iterations
        phase, _, name, copy = key.split("/")
        state = f"{phase} {name}#{copy}: {'measuring' if kind == 'progress' else value}"
        self.progress.update(self.current, completed=sum(self.counts.values()), state=state)

    def done(self, row: dict[str, Any]) -> None:
        self.progress.update(self.runs, advance=1)
        self.progress.update(self.current, visible=False)
        colour = {"complete": "green", "failed": "red", "skipped": "yellow"}.get(row["status"], "yellow")
        extra = f" ({row['wall_s']:.0f} s)" if row.get("wall_s") and not row.get("resumed") else ""
        why = f": {row['message']}" if row.get("message") else ""
        self.progress.console.print(f"[{colour}]{row['status']}[/] " + escape(f"{row['name']}{extra}{why}"),
                                    highlight=False, soft_wrap=True)


@click.command()
@click.argument("sources", nargs=-1, required=True, metavar="SUITE_OR_FILES...")
@click.option("--out", type=click.Path(file_okay=False), help="Study directory (default results/<suite>-<time>/); "
              "run again with the same --out to resume.")
@click.option("--dry-run", is_flag=True, help="List the runs, their estimated GPU and host memory and what cannot "
              "run here; run nothing.")
@click.option("--iterations", type=click.IntRange(min=1), help="Override every scenario's iterations.")
@click.option("--warmup", type=click.IntRange(min=0), help="Override every scenario's warm-up iterations.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Override every scenario's device.")
@click.option("--control/--no-control", default=True, show_default=True,
              help="Run an A/A control first (the first tenant alone in both phases): what no effect looks like.")
def sweep(sources: tuple[str, ...], out: str | None, dry_run: bool, iterations: int | None,
          warmup: int | None, device: str | None, control: bool) -> None:
    """Run every scenario (matrices expanded) of suites (directories) and files into one study."""
    runs = expand_all(list(sources))
    plans = plan(with_control(runs) if control else runs, device, iterations, warmup, dry_run)
    study_dir = Path(out) if out else default_study_dir(list(sources))
    if dry_run:
        Console(width=None if console.is_terminal else 200).print(dry_run_table(plans, study_dir if out else None))
        runnable = [p for p in plans if not p.skip]
        console.print(f"{len(runnable)} of {len(plans)} run(s) would run into {study_dir}")
        return
    if study_dir.exists() and not study_dir.is_dir():
        raise TenancyError(f"{study_dir}: exists and is not a directory")
    study_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"[bold]sweep[/]: {len(plans)} run(s) -> {study_dir}  (resume: same command with --out {study_dir})")
    t0 = time.monotonic()
    bars = _Bars(len(plans))
    overrides = {"iterations": iterations, "warmup": warmup, "device": device, "sources": list(sources)}
    with bars.progress:
        code = run_study(plans, study_dir, overrides, bars.start_run, bars.done)
    rows = Study(study_dir).data["runs"]
    names = {p.run.name for p in plans}
    counts = pd.Series([r["status"] for r in rows if r["name"] in names]).value_counts().to_dict()
    console.print(f"sweep {'interrupted' if code == EXIT_INTERRUPTED else 'done'} in "
                  f"{time.monotonic() - t0:.0f} s: " + ", ".join(f"{v} {k}" for k, v in counts.items())
                  + f"; index in {study_dir / SWEEP_CSV}")
    sys.exit(code)
