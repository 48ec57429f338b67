"""The launcher's plumbing: a tenant killed mid-report must not silence the others."""
from __future__ import annotations

import multiprocessing as mp
import queue
import time

from tenancy.launch import Inbox


def _send(out, msg) -> None:
    out.put(msg)


def test_a_tenant_killed_mid_message_does_not_block_the_others():
    """With one shared queue, a writer killed while holding its lock silences every other
    tenant (the launcher then waits forever); with a pipe per tenant the others still report."""
    ctx = mp.get_context("spawn")
    inbox = Inbox(ctx)
    big, small = inbox.outbox(), inbox.outbox()
    a = ctx.Process(target=_send, args=(big, ("samples", "a", b"x" * 50_000_000)))
    a.start()
    big.conn.close()
    assert mp.connection.wait(inbox.readers, timeout=60), "the writer never started writing"
    a.kill()  # in the middle of its 50 MB message: the pipe holds only a part of it
    a.join()
    b = ctx.Process(target=_send, args=(small, ("ready", "b", 1)))
    b.start()
    small.conn.close()
    got, deadline = [], time.monotonic() + 60
    while ("ready", "b", 1) not in got and time.monotonic() < deadline:
        try:
            got.append(inbox.get(timeout=0.5))
        except queue.Empty:
            pass
    b.join()
    assert got == [("ready", "b", 1)]
    assert len(inbox.readers) == 1, "the dead writer's pipe is dropped"
