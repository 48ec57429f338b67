"""How tenants of one launch start together and stop together.

Every tenant warms up, then waits on a barrier (the launcher waits on it too, so it can check
the tenants, e.g. their MPS attachment, before the window opens). Each tenant counts itself done
once it has its samples, but keeps running until all are done, so that nobody runs alone.
"""
from __future__ import annotations

import threading


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
