"""The `tenancy` command line."""
from __future__ import annotations

import os
import signal
import sys

import click
from rich.console import Console

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import STOP_SIGNALS, start_resource_tracker, stop_on_first_signal

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tenancy")
def cli() -> None:
    """Measure transformer models co-located on one GPU: alone, time-sliced, under MPS or streams."""


from tenancy.cli.advise import advise  # noqa: E402
from tenancy.cli.doctor import doctor_cmd  # noqa: E402
from tenancy.cli.models import models_cmd  # noqa: E402
from tenancy.cli.report import report  # noqa: E402
from tenancy.cli.run import run  # noqa: E402
from tenancy.cli.scale import scale  # noqa: E402
from tenancy.cli.serve import serve_command  # noqa: E402
from tenancy.cli.sweep import sweep  # noqa: E402

for command in (run, sweep, report, serve_command, scale, advise, doctor_cmd, models_cmd):
    cli.add_command(command)


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
