"""Holding off the stop signals while what was measured is written, a daemon is stopped or a
child process starts."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GROUP_SIGNALS = (signal.SIGINT, signal.SIGHUP)  # what a terminal sends to the whole process group
PARENT_GONE = (BrokenPipeError, ConnectionResetError, EOFError)  # a child's pipe once its parent stopped


@contextmanager
def children_start_held() -> Iterator[None]:
    """Children started inside inherit Ctrl-C and SIGHUP blocked (the signal mask survives fork and
    exec), so one arriving while a child's interpreter still starts waits in the child instead of
    killing it with the interpreter's own traceback. Each child then calls `ignore_group_signals`
    or `accept_group_signals`. Ours (another thread may take a signal this one blocks, and Python
    runs the handler here) are held too and raised after the block, as if sent a moment later."""
    start_resource_tracker()  # first: its start unblocks SIGINT in the caller (CPython's ensure_running)
    with shielded() as held:  # and we are not interrupted half-way (the child would read a cut pickle)
        old = signal.pthread_sigmask(signal.SIG_BLOCK, GROUP_SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if held.caught:
        signal.raise_signal(held.caught[0])


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the tenants' shared semaphores need one) with
    SIGHUP ignored, which it inherits: it ignores SIGINT and SIGTERM itself but not SIGHUP, so a
    hang-up sent to the run's process group killed it, and the tenants' next unregister started a
    fresh tracker that printed a KeyError traceback for every semaphore it had never seen."""
    from multiprocessing import resource_tracker

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)


def stop_on_first_signal() -> list[int]:
    """The command's handler for Ctrl-C, SIGTERM and SIGHUP (a dropped ssh session): the first raises
    KeyboardInterrupt (cleanup runs, what was measured is written, exit 130); later ones are only
    recorded in the returned list, since the command is already stopping: a second Ctrl-C landing
    after the first but before a write is shielded must not lose what the first one saves."""
    received: list[int] = []

    def handler(signum, frame) -> None:
        received.append(signum)
        if len(received) == 1:
            raise KeyboardInterrupt

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    return received


def ignore_group_signals() -> None:
    """For a child its parent stops: the group's Ctrl-C and SIGHUP are dropped, pending ones too."""
    for sig in GROUP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)


def accept_group_signals() -> None:
    """For a child that stops itself on Ctrl-C: one held since its start arrives now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, GROUP_SIGNALS)


class shielded:
    """Ctrl-C, SIGTERM and SIGHUP are recorded, not raised, inside the block (main thread only):
    a second Ctrl-C while the first one's results are written must not lose them, and the command
    ends right after anyway. `caught` lists the signals that arrived."""

    def __enter__(self) -> "shielded":
        self.saved: dict[int, Any] = {}
        self.caught: list[int] = []
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, lambda n, f: self.caught.append(n)) for s in STOP_SIGNALS}
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for s, handler in self.saved.items():
            signal.signal(s, handler)
