"""An endpoint tenant's life inside its tenant process: start the server (it inherits the
process's environment, so MPS limits and CUDA_VISIBLE_DEVICES apply to it), wait until it is
ready, send the scenario's `warmup` as requests, drive it through the workload, always end
its process group.

Its samples are requests, as for `task: serve` (tenancy/serving/tenant.py): latency = E2E,
prefill_ms = TTFT, decode_ms_per_token = TPOT, start/end = scheduled arrival/finish on the host
clock; one pass of the workload is the quota, replayed (flagged `extra`) while others measure.
"""
from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tenancy.core.sync import Quota
from tenancy.endpoint.client import drive
from tenancy.endpoint.process import EndpointError, Server, free_port
from tenancy.serving import workload


@dataclass
class EndpointTask:
    server: Server
    model: Optional[str]
    specs: list[workload.RequestSpec]
    concurrency: Optional[int]


def log_path(job) -> Path:
    """The server's stdout and stderr, in the run directory."""
    base = Path(job.out_dir) if job.out_dir else Path.cwd()
    return base / "logs" / f"{job.phase}-{job.repeat}-{job.tenant['name']}-{job.copy}.log"


def _vocab_size(tenant) -> int:
    from tenancy.models import zoo

    return zoo.get(tenant.model).vocab_size(tenant.size)


@contextlib.contextmanager
def started(tenant, job, sync) -> Iterator[EndpointTask]:
    """The ready server; on leaving (also on an error or SIGTERM) its process group is ended."""
    cfg = tenant.endpoint
    argv, url, env = cfg.filled(free_port())
    specs = workload.generate(cfg.workload, _vocab_size(tenant))
    closed = cfg.workload.arrival == "closed" and cfg.workload.trace is None
    saved = None
    if threading.current_thread() is threading.main_thread():  # the launcher's terminate(): clean up first
        saved = signal.signal(signal.SIGTERM, _raise_on_term)
    try:
        server = Server(f"{tenant.name}#{job.copy}", argv, env, url, log_path(job))
    except OSError as err:
        raise EndpointError(f"endpoint {tenant.name}#{job.copy}: cannot start {argv[0]!r}: {err}") from None
    try:
        ids = server.wait_ready(cfg.ready_timeout_s, sync.aborted)
        model = cfg.served_model or (ids[0] if ids else None)
        yield EndpointTask(server, model, specs, cfg.workload.concurrency if closed else None)
    finally:
        server.stop()
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)


def _raise_on_term(signum, frame) -> None:
    raise SystemExit(128 + signum)


def warm_up(task: EndpointTask, sync, n: int) -> None:
    """The scenario's `warmup`, as requests: the workload's first n, one at a time, before the
    barrier and never measured (a fresh server's first requests pay for lazy compilation and
    allocation, as `vllm bench serve --num-warmups` knows)."""
    specs = task.specs[:n]
    if not specs:
        return
    rows = asyncio.run(drive(task.server.url, task.model, specs, time.perf_counter_ns(), 1, sync.aborted,
                             task.server.check_alive))
    if rows and not any(r["status"] == "finished" for r in rows):
        raise EndpointError(f"endpoint {task.server.name}: all {len(rows)} warm-up requests failed, "
                            f"first: {rows[0]['error']}; see {task.server.log}")


def measure(task: EndpointTask, sync, job, cols: dict[str, list], progress=None) -> None:
    """Fills `cols` (one row per finished request) and cols["requests"] (every request's record)."""
    warm_up(task, sync, job.warmup)
    quota = Quota(sync, job.slot, 1, job.min_duration_s)  # one pass of the workload
    quota.start()
    replay = 0
    go = not sync.aborted()
    while go:
        start = time.perf_counter_ns()
        before = len(cols["iteration"])
        tick = (lambda n: progress(before + n)) if progress else (lambda n: None)
        rows = asyncio.run(drive(task.server.url, task.model, task.specs, start, task.concurrency,
                                 sync.aborted, task.server.check_alive, tick))
        done = [r for r in rows if r["status"] == "finished"]
        if rows and not done:
            raise EndpointError(f"endpoint {task.server.name}: all {len(rows)} requests failed, "
                                f"first: {rows[0]['error']}; see {task.server.log}")
        for r in done:
            cols["iteration"].append(len(cols["iteration"]))
            cols["start_ns"].append(start + int(r["arrival_s"] * 1e9))
            cols["end_ns"].append(start + int(r["finish_s"] * 1e9))
            cols["latency_ms"].append(r["e2e_ms"])
            cols["prefill_ms"].append(r["ttft_ms"])
            cols["decode_ms_per_token"].append(r["tpot_ms"])
            cols["extra"].append(quota.extra)
        cols["requests"].extend({**r, "replay": replay, "extra": quota.extra} for r in rows)
        replay += 1
        if progress:
            progress(len(cols["iteration"]))
        go = quota.keep_going(replay) and not sync.aborted()
