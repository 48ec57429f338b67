"""The serving engine as a harness tenant (`task: serve`).

Its unit of measurement is a request, not an iteration: each request becomes one row of
samples.parquet (latency = E2E, prefill_ms = TTFT, decode_ms_per_token = TPOT, start/end =
arrival/finish on the host clock), so the window and slowdown rules apply unchanged, and its
full record goes to requests.parquet. The workload clock starts at the barrier. One pass of the
workload is the tenant's quota (with `min_duration_s`); while other tenants still measure, the
workload is replayed (its requests flagged `extra`) so nobody runs alone.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from tenancy.core.sync import Quota
from tenancy.serving.config import ServingConfig


@dataclass
class ServeTask:
    cfg: ServingConfig
    engine: Any
    device: str


def config_for(tenant, seed: int = 0) -> ServingConfig:
    """The tenant's `serving:` block with the model it names (model, size, dtype, weights) and the
    scenario's seed: the one place a scenario tenant becomes an engine config."""
    block = tenant.serving.model_dump() if tenant.serving else {}
    return ServingConfig.model_validate({**block, "model": tenant.model, "size": tenant.size, "dtype": tenant.dtype,
                                         "weights": tenant.weights, "seed": seed})


def build(tenant, device: str, seed: int) -> ServeTask:
    """The KV pool is sized from the tenant's own budget (its MPS pinned-memory limit when set,
    see memory.py), never from what neighbours building at the same time leave free."""
    from tenancy.serving.api import build_engine
    from tenancy.serving.memory import parse_mem_limit

    cfg = config_for(tenant, seed)
    limit = parse_mem_limit(tenant.mps.pinned_mem_limit) if tenant.mps else None
    return ServeTask(cfg, build_engine(cfg, device, mem_limit_bytes=limit), device)


def measure(task: ServeTask, sync, job, cols: dict[str, list], progress=None) -> None:
    """Fills `cols` (one row per request) and cols["requests"] (the engine's full records)."""
    from tenancy.serving.api import run_serving

    quota = Quota(sync, job.slot, 1, job.min_duration_s)  # one pass of the workload
    quota.start()
    replay = 0
    go = not sync.aborted()
    while go:
        start = time.perf_counter_ns()
        df = run_serving(task.cfg, task.device, start_ns=start, engine=task.engine)
        offset = len(cols["iteration"])
        for r in df.itertuples():
            cols["iteration"].append(offset + r.Index)
            cols["start_ns"].append(start + int(r.arrival_s * 1e9))
            cols["end_ns"].append(start + int(r.finish_s * 1e9))
            cols["latency_ms"].append(r.e2e_ms)
            cols["prefill_ms"].append(r.ttft_ms)
            cols["decode_ms_per_token"].append(r.tpot_ms)
            cols["extra"].append(quota.extra)
        df["replay"] = replay
        df["extra"] = quota.extra
        cols["requests"].extend(df.to_dict("records"))
        replay += 1
        if progress:
            progress(len(cols["iteration"]))
        go = quota.keep_going(replay)
