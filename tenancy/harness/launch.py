"""Start the tenants of one launch as spawned processes and collect what they report.

The launcher never loses a measured sample: a failing tenant stops the others (they send what
they have), a crashed process is recorded with its exit code, and Ctrl-C / SIGTERM stop the
tenants through the shared abort flag before anything is killed. Each tenant reports through a
pipe of its own: a tenant killed in the middle of a message cannot hold a lock that the others
need to report (a shared multiprocessing.Queue's write lock can), and a tenant that still does
not report STUCK_S after the stop is given up on rather than waited for.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import queue as queue_mod
import time
from dataclasses import dataclass, field
from threading import BrokenBarrierError
from typing import Callable

from tenancy.core.env_vars import environ
from tenancy.core.signals import children_start_held
from tenancy.core.sync import ProcessSync
from tenancy.harness.tenant import Job, process_main

GRACE_S = 20.0  # how long interrupted tenants get to hand in their samples
STUCK_S = 300.0  # after a tenant failed: longer, a serving tenant finishes its workload pass first


@dataclass
class Outcome:
    job: Job
    status: str = "pending"  # ok | error | oom | crashed | aborted | interrupted
    message: str = ""
    pid: int | None = None
    exitcode: int | None = None
    cols: dict[str, list] | None = None


class Outbox:
    """A tenant's end of its own pipe to the launcher (the `queue` that run_tenant puts to)."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def put(self, msg: tuple) -> None:
        self.conn.send(msg)


class Inbox:
    """The launcher's ends of every tenant's pipe, read like a queue."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.readers: list = []

    def outbox(self) -> Outbox:
        reader, writer = self.ctx.Pipe(duplex=False)
        self.readers.append(reader)
        return Outbox(writer)

    def get(self, timeout: float) -> tuple:
        for reader in mp.connection.wait(self.readers, timeout):
            try:
                return reader.recv()
            except (EOFError, OSError):  # its process ended: nothing more will come
                self.readers.remove(reader)
        raise queue_mod.Empty


@dataclass
class Launch:
    """One group of tenants that run together (a solo tenant alone, or the shared phase)."""

    jobs: list[Job]
    on_event: Callable[[str, str, object], None] = lambda key, kind, value: None
    before_start: Callable[[dict[str, int]], None] | None = None  # sees tenant pids; raise to abort
    outcomes: dict[str, Outcome] = field(init=False)
    # perf_counter_ns by which a tenant had stopped without reporting (the last moment it was seen
    # alive): the common window closes there, since a killed tenant's samples are lost with it
    stopped_ns: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.outcomes = {j.key: Outcome(j) for j in self.jobs}
        for slot, job in enumerate(self.jobs):
            job.slot = slot


class Interrupted(Exception):
    """Ctrl-C or SIGTERM reached the launcher; the outcomes hold what was measured."""


def run_processes(launch: Launch) -> dict[str, Outcome]:
    """One spawned process per tenant, each started with its environment in place."""
    ctx = mp.get_context("spawn")
    inbox = Inbox(ctx)
    sync = ProcessSync(ctx, len(launch.jobs))

    def start(procs: dict[str, mp.Process]) -> None:
        for job in launch.jobs:
            out = inbox.outbox()
            p = ctx.Process(target=process_main, args=(job, sync, out), name=f"tenancy:{job.label}", daemon=True)
            with environ(job.env), children_start_held():
                p.start()
            out.conn.close()  # the child has its copy; ours would hide the end of the pipe
            procs[job.key] = p
            launch.outcomes[job.key].pid = p.pid

    return supervise(launch, start, inbox, sync)


def supervise(launch: Launch, start: Callable[[dict[str, mp.Process]], None], q, sync) -> dict[str, Outcome]:
    """Start the tenants' processes (`start` fills key -> process; several keys may share one),
    collect their reports, stop them on Ctrl-C while keeping their samples, and always reap them."""
    procs: dict[str, mp.Process] = {}
    try:
        start(procs)
        _collect(launch, procs, q, sync)
    except (KeyboardInterrupt, Interrupted):
        sync.abort()
        _drain(launch, procs, q, deadline=time.monotonic() + GRACE_S, final_status="interrupted")
        raise Interrupted() from None
    finally:
        deadline = time.monotonic() + 10
        for p in set(procs.values()):
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        for key, p in procs.items():
            launch.outcomes[key].exitcode = p.exitcode
    return launch.outcomes


def _handle(launch: Launch, msg: tuple, ready: dict[str, int], sync) -> None:
    kind, key = msg[0], msg[1]
    out = launch.outcomes[key]
    if kind == "ready":
        ready[key] = msg[2]
        out.pid = msg[2]
    elif kind == "samples":
        _, _, out.cols, out.status, out.message = msg
        if out.status not in ("ok", "aborted"):
            sync.abort()
    launch.on_event(key, kind, msg[2] if kind != "samples" else out.status)


def _collect(launch: Launch, procs: dict[str, mp.Process], q, sync) -> None:
    ready: dict[str, int] = {}
    started = False
    dead_since: dict[str, float] = {}
    alive_ns: dict[str, int] = {}
    stopped_at: float | None = None
    while any(o.status == "pending" for o in launch.outcomes.values()):
        try:
            _handle(launch, q.get(timeout=0.1), ready, sync)
        except queue_mod.Empty:
            pass
        if not started and len(ready) == len(procs):
            started = True
            try:
                if launch.before_start:
                    launch.before_start(dict(ready))
                sync.wait_start(timeout=60)
            except BrokenBarrierError:
                pass
            except Exception:
                sync.abort()
                raise
        now = time.monotonic()
        for key, p in procs.items():
            out = launch.outcomes[key]
            if out.status != "pending":
                continue
            if p.is_alive():
                alive_ns[key] = time.perf_counter_ns()
                continue
            if key not in dead_since and launch.stopped_ns is None:
                launch.stopped_ns = alive_ns.get(key, time.perf_counter_ns())
            # a dead process may still have its last message in the pipe: give it a moment
            if now - dead_since.setdefault(key, now) > 2.0:
                out.status = "crashed"
                out.message = f"tenant process exited with code {p.exitcode} without reporting"
                out.cols = None
                sync.abort()
                launch.on_event(key, "samples", out.status)
        if sync.aborted():
            stopped_at = stopped_at or now
            if now - stopped_at > STUCK_S:
                for key, out in launch.outcomes.items():
                    if out.status == "pending":
                        out.status = "aborted"
                        out.message = f"stopped, but did not hand in its samples within {STUCK_S:.0f} s"
                        launch.on_event(key, "samples", out.status)


def _drain(launch: Launch, procs, q, deadline: float, final_status: str) -> None:
    while time.monotonic() < deadline and any(o.status == "pending" for o in launch.outcomes.values()):
        try:
            msg = q.get(timeout=0.2)
        except queue_mod.Empty:
            if not any(p.is_alive() for p in procs.values()):
                break
            continue
        if msg[0] == "samples":
            out = launch.outcomes[msg[1]]
            _, _, out.cols, out.status, out.message = msg
            if out.status == "aborted":
                out.status, out.message = final_status, "run interrupted; samples kept up to this point"
    for out in launch.outcomes.values():
        if out.status == "pending":
            out.status, out.message = final_status, "run interrupted before the tenant reported"
