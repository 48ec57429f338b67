"""The harness's own cost per iteration, against a bare loop over the same model.

    python tools/overhead.py [--device cpu|cuda] [--iterations 300] [--size tiny|full] [--threads 1]

For each workload it times N iterations of `task.step` in a bare loop (one synchronisation at
the end of each iteration on CUDA, as the harness does), then the same N through
`tenancy.harness.tenant.measure` (timer, NVTX ranges, bookkeeping, the done/abort checks), and prints
the difference per iteration. A no-op workload isolates the fixed cost. Medians of 5 rounds.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from rich.console import Console
from rich.table import Table

from tenancy.core.sync import ThreadSync
from tenancy.harness.scenario import Tenant
from tenancy.harness.tasks import build_task
from tenancy.harness.tenant import COLUMNS, Job, measure
from tenancy.harness.timer import make_timer


class NoOp:
    stages = ("forward",)

    def step(self, timer) -> None:
        pass


def bare(task, device: str, n: int) -> float:
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    t0 = time.perf_counter_ns()
    for _ in range(n):
        task.step(_NullTimer)
        sync()
    return (time.perf_counter_ns() - t0) / n / 1e3


class _NullTimer:
    @staticmethod
    def mark() -> None:
        pass


def harness(task, tenant: Tenant, device: str, n: int) -> float:
    sync = ThreadSync(1)
    threading.Thread(target=sync.wait_start, daemon=True).start()  # the launcher's side of the barrier
    job = Job(tenant=tenant.model_dump(), copy=0, phase="solo", repeat=0, device=device, iterations=n,
              warmup=0, min_duration_s=0, threads=torch.get_num_threads(), seed=0)
    cols = {c: [] for c in COLUMNS}
    t0 = time.perf_counter_ns()
    measure(task, make_timer(device), sync, job, cols)
    return (time.perf_counter_ns() - t0) / n / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--size", default="tiny", choices=["tiny", "full"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier numbers)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = "float16" if args.device == "cuda" else "float32"
    workloads = {
        "no-op": (None, Tenant(name="noop", model="bert-base", size="tiny")),
        "bert-base forward b8 s128": ("bert-base", Tenant(name="bert", model="bert-base", size=args.size, dtype=dtype)),
        "distilgpt2 generate b8 s128 t16": ("distilgpt2", Tenant(
            name="gpt2", model="distilgpt2", size=args.size, dtype=dtype, new_tokens=16)),
    }
    table = Table(title=f"harness overhead per iteration ({args.device}, {args.size}, "
                        f"{args.iterations} iterations, median of {args.rounds} rounds)")
    for col in ("workload", "bare µs/iter", "harness µs/iter", "overhead µs", "overhead %"):
        table.add_column(col, justify="left" if col == "workload" else "right")
    for label, (model, tenant) in workloads.items():
        task = NoOp() if model is None else build_task(tenant, args.device, seed=0)
        n = args.iterations * (20 if model is None else 1)
        for _ in range(3):  # warm-up
            bare(task, args.device, max(1, n // 10))
        b, h = [], []
        for _ in range(args.rounds):  # interleave, so drift hits both alike
            b.append(bare(task, args.device, n))
            h.append(harness(task, tenant, args.device, n))
        mb, mh = statistics.median(b), statistics.median(h)
        table.add_row(label, f"{mb:,.1f}", f"{mh:,.1f}", f"{mh - mb:,.1f}",
                      f"{(mh - mb) / mb * 100:.2f}" if mb > 1 else "-")
    Console().print(table)


if __name__ == "__main__":
    main()
