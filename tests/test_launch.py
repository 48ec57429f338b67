"""The launcher's plumbing: a tenant killed mid-report must not silence the others."""
from __future__ import annotations

import multiprocessing as mp
import queue
import time

from tenancy.harness.launch import Inbox


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


def test_the_quota_rule_counts_items_and_time_then_waits_for_everyone():
    """One rule for every tenant: done after the items *and* the minimum time, then extra rows
    until all are done; an abort stops at once."""
    from tenancy.core.sync import Quota, ThreadSync

    sync = ThreadSync(2)
    q = Quota(sync, 0, items=3, min_duration_s=1.0)
    q.t0 = 0
    assert q.keep_going(3, now_ns=500_000_000) and not q.extra  # items, not yet the time
    assert q.keep_going(4, now_ns=1_000_000_000) and q.extra  # both: done, but tenant 1 is not
    sync.mark_done(1)
    assert not q.keep_going(5, now_ns=1_100_000_000)
    other = Quota(ThreadSync(1), 0, items=10, min_duration_s=0)
    other.sync.abort()
    assert not other.keep_going(1, now_ns=0) and not other.extra
