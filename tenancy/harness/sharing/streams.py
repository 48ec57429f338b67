"""`sharing: streams`: all tenants in one spawned process, one thread and one CUDA stream each.

The CLI process never creates a CUDA context: one child process holds the tenants' threads.
Each thread runs the same tenant code (`run_tenant`) under `torch.cuda.stream(its stream)`, so
CUDA events time its own stream. The child's main thread is the launcher's stand-in: it forwards
the tenants' messages, meets the parent at a two-party barrier once every tenant is warm (the
parent checks them first), then opens the tenants' barrier. Aborts travel both ways. The parent
reuses launch.py's collection, so failures, crashes and interruptions are handled the same way.

On a CPU there is no stream concurrency: the threads share the GIL and torch's thread pool; the
manifest's sharing block says so. On every device it also says that the results include host-side
serialisation (the threads issue their work under one GIL): `host_ms` per sample measures it.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from tenancy.core.env_vars import environ
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import children_start_held, ignore_group_signals
from tenancy.core.sync import ProcessSync, ThreadSync
from tenancy.harness.launch import Inbox, Launch, Outcome, supervise
from tenancy.harness.sharing.base import SharingMode
from tenancy.harness.tenant import Job, run_tenant

CPU_NOTE = ("device cpu: tenants are threads of one process sharing the GIL and torch's CPU thread pool; "
            "no stream concurrency exists on a CPU")
HOST_NOTE = ("streams results include host-side serialisation: the tenants' threads issue their work under one "
             "Python global interpreter lock, and eager forward passes of small models are launch-bound, so a "
             "slowdown may be the host's rather than the GPU's; samples.parquet host_ms and summary.csv host_share "
             "show how much of each iteration the host spent issuing work")


class StreamsMode(SharingMode):
    @contextmanager
    def session(self, run_dir: Path) -> Iterator[dict[str, Any]]:
        info: dict[str, Any] = {"mode": self.name, "layout": "one spawned process, one thread per tenant",
                                "device": self.device, "host_serialisation": HOST_NOTE}
        if self.device == "cuda":
            info["streams"] = "one torch.cuda.Stream per tenant thread (CUDA events time each stream)"
        else:
            info["streams"] = None
            info["note"] = CPU_NOTE
        yield info

    def launch(self, launch: Launch) -> dict[str, Outcome]:
        return run_threads(launch)


def run_threads(launch: Launch) -> dict[str, Outcome]:
    """Like launch.run_processes, with one child process for every tenant of the launch."""
    ctx = mp.get_context("spawn")
    inbox = Inbox(ctx)
    out = inbox.outbox()
    bridge = ProcessSync(ctx, 1)  # parent and the child's main thread
    threads = max(j.threads for j in launch.jobs)
    env = {k: v for j in launch.jobs for k, v in j.env.items()}
    # every tenant thread starts with this many intra-op threads, as a solo tenant process does
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    child = ctx.Process(target=child_main, args=(launch.jobs, bridge, out, threads), name="tenancy:streams",
                        daemon=True)

    def start(procs: dict[str, Any]) -> None:
        with environ(env), children_start_held():
            child.start()
        out.conn.close()  # the child has its copy
        for job in launch.jobs:
            procs[job.key] = child
            launch.outcomes[job.key].pid = child.pid

    return supervise(launch, start, inbox, bridge)


@exits_quickly
def child_main(jobs: list[Job], bridge: ProcessSync, out_q, threads: int) -> None:
    """The streams process: one thread per tenant; this thread forwards and relays the barrier."""
    ignore_group_signals()  # the parent stops us
    import torch

    torch.set_num_threads(threads)
    device = jobs[0].device
    sync = ThreadSync(len(jobs))
    local: queue_mod.Queue = queue_mod.Queue()
    load_lock = threading.Lock()
    workers = [threading.Thread(target=_tenant_thread, args=(job, sync, local, device, load_lock), name=job.label,
                                daemon=True)
               for job in jobs]
    for w in workers:
        w.start()
    relay = threading.Thread(target=_relay_start, args=(sync, bridge), daemon=True)
    reported, ready = 0, 0
    while reported < len(jobs):
        if bridge.aborted() and not sync.aborted():
            sync.abort()  # the parent stopped the launch: the tenants hand in what they have
        try:
            msg = local.get(timeout=0.05)
        except queue_mod.Empty:
            continue
        out_q.put(msg)
        if msg[0] == "ready":
            ready += 1
            if ready == len(jobs):
                relay.start()
        elif msg[0] == "samples":
            reported += 1
            if msg[3] not in ("ok", "aborted"):
                sync.abort()
    for w in workers:
        w.join(5)


def _relay_start(sync: ThreadSync, bridge: ProcessSync) -> None:
    """Meet the parent (it checks the tenants first), then release the tenants together."""
    try:
        bridge.wait_start(timeout=120)
        sync.wait_start(timeout=60)
    except threading.BrokenBarrierError:
        sync.abort()


def _tenant_thread(job: Job, sync: ThreadSync, q, device: str, load_lock: threading.Lock) -> None:
    if device.startswith("cuda"):
        import torch

        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            run_tenant(job, sync, q, load_lock)
    else:
        run_tenant(job, sync, q, load_lock)
