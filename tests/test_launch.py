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


SCRIPT = '''import multiprocessing as mp
import sys

from tenancy.cli.main import main  # what the `tenancy` console script imports


def child(q):
    q.put(sorted(m for m in ("pandas", "pyarrow", "scipy", "rich.table", "tenancy.cli.run") if m in sys.modules))


if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    print(q.get(timeout=120))
    p.join()
'''


def test_a_process_spawned_from_the_tenancy_script_imports_no_command(tmp_path):
    """Spawn runs the parent's main script again in the child (as `__mp_main__`): a tenant of a
    `tenancy run` started from the console script imports tenancy.cli.main, which must cost it
    click, not every command's modules (pandas, pyarrow, scipy: 0.7 s of CPU per tenant here)."""
    import subprocess
    import sys

    script = tmp_path / "tenancy_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
