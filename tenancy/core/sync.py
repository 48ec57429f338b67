"""How tenants of one launch start together and stop together.

Every tenant warms up, then waits on a barrier (the launcher waits on it too, so it can check
the tenants, e.g. their MPS attachment, before the window opens). Each tenant counts itself done
once it has its samples, but keeps running until all are done, so that nobody runs alone.
"""
from __future__ import annotations

import threading
import time


class ProcessSync:
    """For tenants in separate processes (spawned); picklable as a Process argument."""

    def __init__(self, ctx, tenants: int) -> None:
        self.tenants = tenants
        self.barrier = ctx.Barrier(tenants + 1)
        # one flag per tenant, no lock: a tenant killed while counting cannot block the others
        self._done = ctx.Array("b", tenants, lock=False)
        self._abort = ctx.Value("b", 0, lock=False)

    def wait_start(self, timeout: float | None = None) -> None:
        self.barrier.wait(timeout)

    def mark_done(self, slot: int) -> None:
        self._done[slot] = 1

    def all_done(self) -> bool:
        return all(self._done)

    def aborted(self) -> bool:
        return bool(self._abort.value)

    def abort(self) -> None:
        self._abort.value = 1
        self.barrier.abort()


class ThreadSync:
    """The same contract for tenants that are threads of one process (CUDA streams)."""

    def __init__(self, tenants: int) -> None:
        self.tenants = tenants
        self.barrier = threading.Barrier(tenants + 1)
        self._done = [False] * tenants
        self._abort = False

    def wait_start(self, timeout: float | None = None) -> None:
        self.barrier.wait(timeout)

    def mark_done(self, slot: int) -> None:
        self._done[slot] = True

    def all_done(self) -> bool:
        return all(self._done)

    def aborted(self) -> bool:
        return self._abort

    def abort(self) -> None:
        self._abort = True
        self.barrier.abort()


class Quota:
    """The quota rule, one for every kind of tenant: measure until `items` are done and
    `min_duration_s` has passed, count yourself done, then keep running (what follows is `extra`)
    until every tenant of the launch is done, so that nobody runs alone."""

    def __init__(self, sync, slot: int, items: int, min_duration_s: float) -> None:
        self.sync, self.slot, self.items = sync, slot, items
        self.min_ns = int(min_duration_s * 1e9)
        self.t0 = 0
        self.extra = False  # the quota is met: rows from now on are flagged extra

    def start(self, timeout: float | None = None) -> None:
        """Wait for the launch's barrier; the quota's clock starts when it opens."""
        self.sync.wait_start(timeout)
        self.t0 = time.perf_counter_ns()

    def keep_going(self, done: int, now_ns: int | None = None) -> bool:
        """After `done` items: whether to run another one."""
        now_ns = time.perf_counter_ns() if now_ns is None else now_ns
        if not self.extra and done >= self.items and now_ns - self.t0 >= self.min_ns:
            self.extra = True
            self.sync.mark_done(self.slot)
        return not self.sync.aborted() and not (self.extra and self.sync.all_done())
