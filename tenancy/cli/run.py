"""`tenancy run SCENARIO`: each tenant alone, then all together, with live progress and a summary."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError

console = Console(stderr=True)


@click.command()
@click.argument("scenario_file", metavar="SCENARIO")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default results/<name>-<time>/).")
@click.option("--iterations", type=click.IntRange(min=1), help="Override the scenario's iterations.")
@click.option("--warmup", type=click.IntRange(min=0), help="Override the scenario's warm-up iterations.")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Override the scenario's device.")
@click.option("--nsys", is_flag=True, help="Run under Nsight Systems; report and kernel summary in the run directory.")
@click.option("--mps-exclusive-process", is_flag=True,
              help="sharing: mps: set EXCLUSIVE_PROCESS for the shared phase, restore after (root, a card you own).")
def run(scenario_file: str, out: str | None, iterations: int | None, warmup: int | None,
        device: str | None, nsys: bool, mps_exclusive_process: bool) -> None:
    """Run SCENARIO: each tenant alone, then all together; write a run directory."""
    from tenancy.core import results
    from tenancy.gpu import nsys as nsys_mod
    from tenancy.harness import preflight, sharing
    from tenancy.harness.matrix import load_single
    from tenancy.harness.runner import Runner, resolve

    scenario = resolve(load_single(scenario_file), device, iterations, warmup)
    if scenario.autoscale is not None:
        raise TenancyError(f"{scenario_file}: an autoscale scenario; run it with `tenancy scale {scenario_file}`")
    if mps_exclusive_process:
        if scenario.mode != "mps":
            raise TenancyError(f"--mps-exclusive-process applies to sharing: mps only; {scenario_file} has "
                               f"sharing: {scenario.mode}")
        scenario = scenario.model_copy(update={"sharing": scenario.sharing.model_copy(
            update={"exclusive_process": True})})
    sharing.get(scenario.sharing, scenario.device).check()
    preflight.check(scenario)  # memory (GPU and host) and the card's compute mode, before anything starts
    if nsys_mod.is_profiled_run(out):  # we are the run that nsys profiles: its directory is ready
        run_dir = Path(out)
    elif nsys:
        nsys_path = nsys_mod.find_nsys()
        run_dir = results.new_run_dir(out, scenario.name)
        passed_on = [*(["--iterations", str(iterations)] if iterations else []),
                     *(["--warmup", str(warmup)] if warmup is not None else []),
                     *(["--device", device] if device else []),
                     *(["--mps-exclusive-process"] if mps_exclusive_process else [])]
        console.print(f"[bold]{scenario.name}[/]: profiling with Nsight Systems -> {run_dir}/{nsys_mod.REPORT}.nsys-rep")
        sys.exit(nsys_mod.profile_run(nsys_path, scenario_file, run_dir, passed_on))
    else:
        run_dir = results.new_run_dir(out, scenario.name)
    console.print(f"[bold]{scenario.name}[/]: {len(scenario.instances())} tenant process(es), "
                  f"sharing={scenario.mode}, device={scenario.device} -> {run_dir}")
    with _progress(scenario.iterations) as on_event:
        runner = Runner(scenario, run_dir, source=str(scenario_file), on_event=on_event)
        code = runner.run()
    _print_summary(runner)
    if code == EXIT_INTERRUPTED:
        console.print(f"[yellow]interrupted[/]: samples measured so far are in {run_dir}")
    elif code == EXIT_FAILED:
        # plain text: a failure message may hold brackets ("[enforce fail at ...]") that markup would eat
        console.print(f"run failed: {runner.failure()} (results kept in {run_dir})", markup=False, highlight=False,
                      soft_wrap=True)
    sys.exit(code)


class _progress:
    """Rich progress bars fed by the runner's events; one bar per tenant process."""

    def __init__(self, iterations: int) -> None:
        self.iterations = iterations
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=console,
                             transient=False, disable=not console.is_terminal)
        self.tasks: dict[str, int] = {}
        self.measuring: set[str] = set()

    def __enter__(self):
        self.bars.__enter__()
        return self.event

    def __exit__(self, *exc) -> None:
        self.bars.__exit__(*exc)

    def event(self, key: str, kind: str, value: object) -> None:
        if key not in self.tasks:
            self.tasks[key] = self.bars.add_task(key, total=self.iterations, state="starting")
        task = self.tasks[key]
        if kind == "status":
            self.bars.update(task, state=str(value))
        elif kind == "ready":
            self.bars.update(task, state="waiting for the others")
        elif kind == "progress":
            self.bars.update(task, completed=min(int(value), self.iterations), state="measuring")
            if not console.is_terminal and key not in self.measuring:  # a log (nohup, CI) sees the window open
                self.measuring.add(key)
                console.print(f"  {key}: measuring")
        elif kind == "samples":
            self.bars.update(task, completed=self.iterations if value == "ok" else None, state=str(value))
        if not console.is_terminal and kind in ("samples",):
            console.print(f"  {key}: {value}")


def _print_summary(runner) -> None:
    summary = getattr(runner, "summary", None)
    if summary is None or summary.empty:
        return
    m = runner.metrics
    table = Table(title=f"summary ({runner.run_dir}): in-window samples of {m.get('n_repeats') or 1} repeat(s)")
    for col in ("phase", "tenant", "n", "mean ms", "p50 ms", "p99 ms", "items/s", "slowdown [95% CI]", "verdict"):
        table.add_column(col, justify="left" if col in ("phase", "tenant", "verdict") else "right")
    num = lambda v, f: "" if v != v else format(v, f)  # noqa: E731  (NaN: too few samples, or n/a)
    for r in summary.itertuples():
        ci = "" if r.slowdown != r.slowdown else (f"{r.slowdown:.3f} [{num(r.slowdown_ci_low, '.3f')}, "
                                                  f"{num(r.slowdown_ci_high, '.3f')}]")
        table.add_row(r.phase, f"{r.tenant}#{r.copy}", str(r.n), f"{r.mean_ms:.2f}", num(r.p50_ms, ".2f"),
                      num(r.p99_ms, ".2f"), f"{r.items_per_s:.1f}", ci, r.verdict if isinstance(r.verdict, str) else "")
    Console().print(table)
    if m.get("stp") is not None:
        ci = lambda k: "[{}, {}]".format(*(num(v, ".3f") for v in m[f"{k}_ci"]))  # noqa: E731
        Console().print(f"STP {m['stp']:.3f} {ci('stp')} (of {m['n_tenants']})   ANTT {m['antt']:.3f} {ci('antt')}   "
                        f"fairness {m['fairness']:.3f} {ci('fairness')}   95% intervals: {m['ci_method']}")
    for w in m.get("warnings", []):
        console.print(f"warning: {w}", markup=False, highlight=False, soft_wrap=True)
