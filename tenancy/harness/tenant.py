"""One tenant's life: build, warm up, meet the others at the barrier, measure, report.

This module must not import torch at module level: a spawned tenant applies its environment
(MPS pipe directory, thread percentage) before torch creates a CUDA context.
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from threading import BrokenBarrierError
from typing import Any

from tenancy.core.env_vars import apply_env
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import PARENT_GONE, ignore_group_signals
from tenancy.core.sync import Quota

COLUMNS = ("iteration", "start_ns", "end_ns", "latency_ms", "prefill_ms", "decode_ms_per_token", "host_ms", "extra")
BARRIER_TIMEOUT_S = 3600.0  # a tenant that never arrives is caught by the launcher long before


@dataclass
class Job:
    """Everything a tenant needs, as plain data (it crosses a process boundary)."""

    tenant: dict[str, Any]  # scenario.Tenant.model_dump(), dtype resolved
    copy: int
    phase: str  # solo | shared
    repeat: int
    device: str
    iterations: int
    warmup: int
    min_duration_s: float
    threads: int
    seed: int
    env: dict[str, str | None] = field(default_factory=dict)  # None: variable removed
    slot: int = 0  # position in its launch (set by the launcher): its done flag
    out_dir: str = ""  # the run directory (an endpoint tenant's server log goes there)

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.repeat}/{self.tenant['name']}/{self.copy}"

    @property
    def label(self) -> str:
        return f"{self.tenant['name']}#{self.copy}"


def measure(task, timer, sync, job: Job, cols: dict[str, list], progress=None) -> None:
    """The measured loop; fills `cols` in place so an interruption keeps what was measured."""
    import nvtx

    new_tokens = job.tenant["new_tokens"]
    quota = Quota(sync, job.slot, job.iterations, job.min_duration_s)
    i = 0
    quota.start(BARRIER_TIMEOUT_S)
    last_report = quota.t0
    go = not sync.aborted()
    with nvtx.annotate(f"{job.label}:measure", color="red"):
        while go:
            rng = nvtx.start_range(f"{job.label}:iter", payload=i)  # one name per tenant: nsys sums it
            start = time.perf_counter_ns()
            timer.start()
            task.step(timer)
            issued = time.perf_counter_ns()  # the host's share: issuing the work, before waiting for it
            stages = timer.stop()
            end = time.perf_counter_ns()
            nvtx.end_range(rng)
            cols["iteration"].append(i)
            cols["start_ns"].append(start)
            cols["end_ns"].append(end)
            cols["latency_ms"].append(sum(stages))
            cols["prefill_ms"].append(stages[0] if len(stages) == 2 else float("nan"))
            cols["decode_ms_per_token"].append(
                stages[1] / (new_tokens - 1) if len(stages) == 2 and new_tokens > 1 else float("nan"))
            cols["host_ms"].append((issued - start) / 1e6)
            cols["extra"].append(quota.extra)
            i += 1
            go = quota.keep_going(i, end)
            if progress and end - last_report > 200_000_000:
                progress(i)
                last_report = end


def run_tenant(job: Job, sync, queue, load_lock=None) -> None:
    """Run one tenant, reporting to `queue`: ("status", key, text), ("ready", key, pid),
    then exactly one ("samples", key, cols, status, message). Tenants that are threads of one
    process pass a shared `load_lock`: building models (lazy imports, the global seed) is serial."""
    key = job.key
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    status, message = "ok", ""
    try:
        from tenancy.harness.scenario import Tenant

        queue.put(("status", key, "loading"))
        tenant = Tenant.model_validate(job.tenant)
        run = {"serve": _run_serving, "endpoint": _run_endpoint}.get(tenant.task, _run_closed_loop)
        run(tenant, job, sync, queue, cols, load_lock or contextlib.nullcontext())
        if sync.aborted():
            status, message = "aborted", "stopped early: another tenant failed or the run was interrupted"
    except BrokenBarrierError:
        status, message = "aborted", "stopped before measuring: another tenant failed or the run was interrupted"
    except BaseException as err:  # report everything; the launcher decides what it means
        status, message = _classify(err)
        sync.abort()
    queue.put(("samples", key, cols, status, message))


def _set_threads(job: Job) -> None:
    """torch's CPU threads, for the tenants that compute (an endpoint tenant's client never loads torch)."""
    import torch

    if threading.current_thread() is threading.main_thread():
        torch.set_num_threads(job.threads)


def _progress(queue, key: str):
    return lambda n: queue.put(("progress", key, n))


def _run_serving(tenant, job: Job, sync, queue, cols: dict[str, list], load_lock) -> None:
    """Our engine: it warms itself up; its samples are requests."""
    from tenancy.serving import tenant as serving

    cols["requests"] = []
    _set_threads(job)
    with load_lock:
        task = serving.build(tenant, job.device, job.seed)
    queue.put(("ready", job.key, os.getpid()))
    try:
        serving.measure(task, sync, job, cols, _progress(queue, job.key))
    finally:  # the engine issues and waits in one loop: no host share per request
        cols["host_ms"] = [float("nan")] * len(cols["iteration"])


def _run_endpoint(tenant, job: Job, sync, queue, cols: dict[str, list], load_lock) -> None:
    """A real engine's server, started by this process."""
    from tenancy.endpoint import tenant as endpoint

    cols["requests"] = []
    queue.put(("status", job.key, "starting server"))
    with endpoint.started(tenant, job, sync) as task:
        queue.put(("ready", job.key, task.server.pid))  # the server is the GPU's client (MPS check)
        try:
            endpoint.measure(task, sync, job, cols, _progress(queue, job.key))
        finally:  # the client only waits: no host share per request
            cols["host_ms"] = [float("nan")] * len(cols["iteration"])


def _run_closed_loop(tenant, job: Job, sync, queue, cols: dict[str, list], load_lock) -> None:
    """forward / generate: warm up untimed, then one timed iteration after another."""
    import nvtx

    from tenancy.harness.tasks import build_task
    from tenancy.harness.timer import make_timer

    _set_threads(job)
    with load_lock:
        task = build_task(tenant, job.device, job.seed)
    timer = make_timer(job.device)
    queue.put(("status", job.key, "warm-up"))
    with nvtx.annotate(f"{job.label}:warmup", color="gray"):
        for _ in range(job.warmup):
            timer.start()
            task.step(timer)
            timer.stop()
    queue.put(("ready", job.key, os.getpid()))
    measure(task, timer, sync, job, cols, _progress(queue, job.key))


def _classify(err: BaseException) -> tuple[str, str]:
    text = " ".join(str(err).split())[:300]
    name = type(err).__name__
    lower = text.lower()
    # CUDA: torch.OutOfMemoryError; CPU: c10's "DefaultCPUAllocator: can't allocate memory" (older
    # torch: "not enough memory"), or Python's MemoryError
    cpu = ("can't allocate memory", "not enough memory")
    if name in ("OutOfMemoryError", "MemoryError") or "out of memory" in lower or any(c in lower for c in cpu):
        return "oom", f"out of memory: {text}"
    return "error", f"{name}: {text}"


@exits_quickly
def process_main(job: Job, sync, queue) -> None:
    """Entry point of a spawned tenant process."""
    ignore_group_signals()  # the parent stops us
    apply_env(job.env)
    try:
        run_tenant(job, sync, queue)
    except PARENT_GONE:
        pass  # the launcher is gone (interrupted): nobody to hand the samples to
