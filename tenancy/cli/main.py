"""The `tenancy` command line."""
from __future__ import annotations

import importlib
import os
import signal
import sys

import click
from rich.console import Console

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import STOP_SIGNALS, start_resource_tracker, stop_on_first_signal

console = Console(stderr=True)


# A command's module is imported when that command runs (or --help lists them all), not before:
# multiprocessing's spawn runs the parent's main script again in every tenant it starts, and the
# `tenancy` script imports this module, which must then cost click and not pandas, pyarrow and
# scipy (0.7 s of CPU per tenant process on this project's 2-core machine).
COMMANDS = {"advise": "tenancy.cli.advise:advise", "doctor": "tenancy.cli.doctor:doctor_cmd",
            "models": "tenancy.cli.models:models_cmd", "report": "tenancy.cli.report:report",
            "run": "tenancy.cli.run:run", "scale": "tenancy.cli.scale:scale",
            "serve": "tenancy.cli.serve:serve_command", "sweep": "tenancy.cli.sweep:sweep"}


class LazyGroup(click.Group):
    """click's documented way to load subcommands lazily: list them by name, import on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr = COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tenancy")
def cli() -> None:
    """Measure transformer models co-located on one GPU: alone, time-sliced, under MPS or streams."""


@exits_quickly
def main() -> None:
    """Console entry point: the command, then what only the end of a process may do."""
    try:
        run_command()
    finally:  # the exit code is decided: a late Ctrl-C must not turn teardown into a traceback
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        _stop_resource_tracker()


def run_command() -> None:
    """The command in sys.argv; every expected failure is one line and an exit code (SystemExit).
    Tests run it in their own process: main's teardown would reap the tracker that process's
    semaphores are registered with (it unlinks them) and freeze its heap."""
    start_resource_tracker()
    stop_on_first_signal()
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


def _stop_resource_tracker() -> None:
    """Reap the resource tracker before exiting: left to itself it ends only after we do, and a
    run would leave a process behind (a zombie where nothing reaps orphans, as in containers)."""
    from multiprocessing import resource_tracker

    resource_tracker._resource_tracker._stop()


if __name__ == "__main__":
    main()
