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
        self._done = ctx.Value("i", 0)
        self._abort = ctx.Value("b", 0, lock=False)

    def wait_start(self, timeout: float | None = None) -> None:
        self.barrier.wait(timeout)

    def mark_done(self) -> None:
        with self._done.get_lock():
            self._done.value += 1

    def all_done(self) -> bool:
        return self._done.value >= self.tenants

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
        self._lock = threading.Lock()
        self._done = 0
        self._abort = False

    def wait_start(self, timeout: float | None = None) -> None:
        self.barrier.wait(timeout)

    def mark_done(self) -> None:
        with self._lock:
            self._done += 1

    def all_done(self) -> bool:
        return self._done >= self.tenants

    def aborted(self) -> bool:
        return self._abort

    def abort(self) -> None:
        self._abort = True
        self.barrier.abort()
