"""The `tenancy` command line."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError
from tenancy.core.signals import start_resource_tracker

console = Console(stderr=True)
HANG_UP = (signal.SIGTERM, signal.SIGHUP)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tenancy")
def cli() -> None:
    """Measure transformer models co-located on one GPU: alone, time-sliced, under MPS or streams."""


@cli.command()
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


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON (for scripts).")
def doctor_cmd(as_json: bool) -> None:
    """Check this machine before a study: GPUs, driver and torch, MPS, nsys, NVML, memory.

    Exit 0 when nothing blocks a GPU run here, 1 when something does (each row says how to fix it).
    """
    import json

    from tenancy.cli import doctor

    rows = doctor.checks()
    if as_json:
        click.echo(json.dumps(doctor.as_json(rows), indent=2))
    else:
        table = Table(title="tenancy doctor")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        colours = {"ok": "green", "info": "cyan", "warn": "yellow", "block": "bold red"}
        for r in rows:
            table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", r.detail, r.fix)
        Console().print(table)
        blocking = [r.name for r in rows if r.status == "block"]
        Console().print(f"blocked by: {', '.join(blocking)}" if blocking else "nothing blocks a run here")
    sys.exit(1 if doctor.blocked(rows) else 0)


@cli.command("models")
@click.argument("names", nargs=-1, metavar="[MODEL]...")
def models_cmd(names: tuple[str, ...]) -> None:
    """List the model zoo with parameter counts and weight memory; each MODEL named (a folder
    holding config.json, or a model id in the local Hugging Face cache) is added, its kind,
    positions and size derived from its config."""
    from tenancy.models import zoo

    try:
        extra = [zoo.get(n) for n in names]
    except zoo.UnknownModel as err:
        raise TenancyError(str(err)) from None
    table = Table(title="tenancy models")
    numeric = ("params", "fp16 weights", "tiny params", "positions")
    for col in ("model", "kind", "family", *numeric, "hub id / folder"):
        table.add_column(col, justify="right" if col in numeric else "left")
    specs = [*zoo.ZOO.values(), *extra]
    for spec in specs:
        n = zoo.count_params(spec.name)
        tiny = "-" if spec.path else f"{zoo.count_params(spec.name, 'tiny') / 1e3:,.0f} k"
        table.add_row(spec.name, spec.kind, spec.family, f"{n / 1e6:,.1f} M",
                      f"{n * zoo.DTYPE_BYTES['float16'] / 2**30:.2f} GiB", tiny, f"{spec.max_positions:,}",
                      spec.path or spec.hub_id)
    longest = max(len(str(s.path or s.hub_id)) for s in specs)
    Console(width=max(200, 120 + longest)).print(table)  # a folder's path is never cut short


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


from tenancy.cli.sweep import sweep as _sweep  # noqa: E402

cli.add_command(_sweep)
from tenancy.cli.report import report as _report  # noqa: E402

cli.add_command(_report)
from tenancy.cli.serve import serve_command as _serve  # noqa: E402

cli.add_command(_serve)
from tenancy.cli.advise import advise as _advise  # noqa: E402

cli.add_command(_advise)
from tenancy.cli.scale import scale as _scale  # noqa: E402

cli.add_command(_scale)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    """Console entry point: every expected failure is one line and an exit code."""
    start_resource_tracker()
    for sig in HANG_UP:  # a dropped ssh session ends the run like Ctrl-C: cleanup runs, samples are kept
        signal.signal(sig, _raise_interrupt)
    try:
        cli(standalone_mode=False)
    except TenancyError as err:
        console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as err:  # usage mistakes too: the same one-line style as ours
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if isinstance(err, click.UsageError) and ctx else ""
        console.print(f"error: {err.format_message()}{hint}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Exception as err:  # a bug of ours: still one line, with the way to the traceback
        if os.environ.get("TENANCY_DEBUG"):
            raise
        console.print(f"internal error: {type(err).__name__}: {err} (set TENANCY_DEBUG=1 for the traceback)",
                      markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_FAILED)
    finally:  # the exit code is decided: a late Ctrl-C must not turn teardown into a traceback
        for sig in (signal.SIGINT, *HANG_UP):
            signal.signal(sig, signal.SIG_IGN)
        _stop_resource_tracker()


def _stop_resource_tracker() -> None:
    """Reap the resource tracker before exiting: left to itself it ends only after we do, and a
    run would leave a process behind (a zombie where nothing reaps orphans, as in containers)."""
    from multiprocessing import resource_tracker

    resource_tracker._resource_tracker._stop()


if __name__ == "__main__":
    main()
