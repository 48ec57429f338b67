"""A child started inside `children_start_held` holds the group's Ctrl-C and SIGHUP from its first
instruction, so a Ctrl-C that reaches it while its interpreter still starts cannot kill it with the
interpreter's own traceback; the child then drops them (`ignore_group_signals`: its parent stops
it) or takes the held one as a KeyboardInterrupt (`accept_group_signals`)."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading

import pytest

from tenancy.core.signals import (
    GROUP_SIGNALS,
    STOP_SIGNALS,
    accept_group_signals,
    children_start_held,
    ignore_group_signals,
    stop_on_first_signal,
)


def _report_mask_then(conn, accept: bool) -> None:
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    conn.send(sorted(int(s) for s in held if s in GROUP_SIGNALS))
    conn.recv()  # the parent has sent its signal: it is pending here now
    try:
        if accept:
            accept_group_signals()
        else:
            ignore_group_signals()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        conn.send(("ran on", sorted(int(s) for s in held if s in GROUP_SIGNALS)))
    except KeyboardInterrupt:
        conn.send(("interrupted", None))


def _start(accept: bool):
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_report_mask_then, args=(child, accept), daemon=True)
    with children_start_held():
        proc.start()
    os.kill(proc.pid, signal.SIGINT)  # at once: the child's interpreter is still starting
    return proc, parent


def test_a_child_holds_ctrl_c_from_its_start_and_drops_it_when_its_parent_stops_it():
    proc, conn = _start(accept=False)
    assert conn.recv() == sorted(int(s) for s in GROUP_SIGNALS)
    conn.send("go")
    assert conn.recv() == ("ran on", [])
    proc.join(30)
    assert proc.exitcode == 0


def test_a_child_that_stops_itself_gets_the_held_ctrl_c_as_keyboard_interrupt():
    proc, conn = _start(accept=True)
    assert conn.recv() == sorted(int(s) for s in GROUP_SIGNALS)
    conn.send("go")
    assert conn.recv() == ("interrupted", None)
    proc.join(30)
    assert proc.exitcode == 0


def test_the_parent_mask_is_restored_after_the_start():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with children_start_held():
        assert set(GROUP_SIGNALS) <= signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_a_ctrl_c_during_a_start_is_raised_after_it_not_half_way():
    """The start blocks Ctrl-C in this thread only; another thread of ours takes the signal and
    Python runs the handler here. Interrupted half-way, the parent would leave the child reading a
    cut pickle (EOFError)."""
    go = threading.Event()
    sender = threading.Thread(target=lambda: go.wait() and os.kill(os.getpid(), signal.SIGINT))
    sender.start()  # before the block: this thread does not block SIGINT, so it takes it
    ran = []
    with pytest.raises(KeyboardInterrupt):
        with children_start_held():
            go.set()
            sender.join()
            ran.append("the rest of the start")
    assert ran == ["the rest of the start"]


@pytest.fixture
def own_handlers():
    saved = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_only_the_first_stop_signal_interrupts_the_later_ones_are_recorded(own_handlers):
    received = stop_on_first_signal()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGINT)  # the command is already stopping: this one must not cut its writes
    signal.raise_signal(signal.SIGHUP)
    assert received == [signal.SIGINT, signal.SIGINT, signal.SIGHUP]
