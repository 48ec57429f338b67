"""What a sweep shows while it runs: runs done of the study, and iterations of the current run."""
from __future__ import annotations

from typing import Any, Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tenancy.sweep.plan import Planned

console = Console(stderr=True)


class Bars:
    """Two rich bars: runs done of the sweep, and iterations measured in the current run (in-process
    runs only; runs elsewhere report when they finish)."""

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
        where = f" [{row['slurm_job_id']} on {row.get('node')}]" if row.get("slurm_job_id") else (
            f" [{row['gpu_uuid']}]" if row.get("gpu_uuid") and row.get("executor") else "")
        why = f": {row['message']}" if row.get("message") else ""
        log = f" (log: {row['log']})" if row.get("log") and row["status"] != "complete" else ""
        self.progress.console.print(f"[{colour}]{row['status']}[/] " + escape(f"{row['name']}{extra}{where}{why}{log}"),
                                    highlight=False, soft_wrap=True)
