"""Device peaks measured on the device: a large GEMM for FLOP/s, a large copy for bytes/s.

Why measured and not datasheet: a roofline built on numbers this machine cannot reach would call
every tenant slow. The GEMM runs in the tenant's dtype; the copy moves a buffer much larger than
any cache (read + write counted). On a GPU it runs in a spawned process: the run's parent never
creates a CUDA context. Datasheet values (H100 SXM: 989 dense FP16 TFLOP/s, 3.35 TB/s; H200: the
same compute, 4.8 TB/s) are only a sanity check.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

from tenancy.core.exit import exits_quickly
from tenancy.core.signals import children_start_held, ignore_group_signals

GEMM_N = {"cuda": 8192, "cpu": 1024}  # square matrices; 2 n^3 FLOPs per product
COPY_MIB = {"cuda": 1024, "cpu": 128}  # the source buffer (read and written); several times any L3
MIN_TIME_S = {"cuda": 0.5, "cpu": 0.2}  # keep repeating each measurement at least this long


def _best(fn, sync, min_time_s: float, min_reps: int = 3) -> float:
    """Shortest time of one call, after a warm-up call, over at least `min_reps` calls and
    `min_time_s`: a peak is the best the device did, not its average."""
    fn()
    sync()
    best, start, reps = float("inf"), time.perf_counter(), 0
    while reps < min_reps or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return best


def measure(device: str, dtype: str, threads: int | None = None) -> dict[str, Any]:
    """Peak FLOP/s (GEMM in `dtype`) and bytes/s (copy) of `device` here; `threads` sets torch's
    CPU threads for the measurement (default: all of them) and is restored afterwards."""
    import torch

    kind = "cuda" if device.startswith("cuda") else "cpu"
    sync = torch.cuda.synchronize if kind == "cuda" else (lambda: None)
    before = torch.get_num_threads()
    if kind == "cpu" and threads:
        torch.set_num_threads(threads)
    try:
        n = GEMM_N[kind]
        a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
        b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
        out = torch.empty(n, n, device=device, dtype=a.dtype)
        t_gemm = _best(lambda: torch.mm(a, b, out=out), sync, MIN_TIME_S[kind])
        del a, b, out
        src = torch.empty(COPY_MIB[kind] * 2**20, dtype=torch.uint8, device=device).fill_(1)
        dst = torch.empty_like(src)
        t_copy = _best(lambda: dst.copy_(src), sync, MIN_TIME_S[kind])
        del src, dst
        name = torch.cuda.get_device_name() if kind == "cuda" else "cpu"
        return {"device": kind, "name": name, "dtype": dtype, "flops_per_s": 2 * n**3 / t_gemm,
                "bytes_per_s": 2 * COPY_MIB[kind] * 2**20 / t_copy, "gemm_n": n, "copy_mib": COPY_MIB[kind],
                "threads": torch.get_num_threads() if kind == "cpu" else None,
                "load_avg_1m": os.getloadavg()[0],  # a busy host measures low peaks: check this first
                "method": "best of repeated torch.mm (2n^3 FLOP) and Tensor.copy_ (2 x buffer bytes)"}
    finally:
        torch.set_num_threads(before)


@exits_quickly
def _child(device: str, dtypes: list[str], env: dict[str, str | None], queue) -> None:
    from tenancy.core.env_vars import apply_env

    ignore_group_signals()  # the parent stops us
    apply_env(env)  # before torch: the run's GPU by UUID, never an MPS daemon
    try:
        queue.put({dt: measure(device, dt) for dt in dtypes})
    except BaseException as err:  # one line back to the parent, never a hang
        queue.put({"error": f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"})


def measure_all(device: str, dtypes: list[str], env: dict[str, str | None] | None = None,
                timeout_s: float = 300.0) -> dict[str, Any]:
    """Peaks per dtype for a run: on a GPU in a spawned process with `env` (no CUDA context in the
    caller), on a CPU here. Returns {dtype: peaks} or {"error": why}; a failure never stops a run."""
    dtypes = sorted(set(dtypes))
    if not device.startswith("cuda"):
        try:
            return {dt: measure(device, dt) for dt in dtypes}
        except Exception as err:
            return {"error": f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(device, dtypes, env or {}, queue), daemon=True)
    with children_start_held():
        proc.start()
    try:
        return queue.get(timeout=timeout_s)
    except Exception:
        return {"error": f"peak measurement gave no answer in {timeout_s:.0f} s"}
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


class Cache:
    """Peaks per (device, dtype), measured once within a run (or a report) and then reused."""

    def __init__(self) -> None:
        self._peaks: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, device: str, dtypes: list[str]) -> dict[str, Any]:
        missing = [dt for dt in set(dtypes) if (device, dt) not in self._peaks]
        if missing:
            got = measure_all(device, missing)
            if "error" in got:
                return got
            self._peaks.update({(device, dt): p for dt, p in got.items()})
        return {dt: self._peaks[(device, dt)] for dt in dtypes}
