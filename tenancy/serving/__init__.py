"""Iteration-level LLM serving engine (Orca design) and its request-level baseline.

Files, one job each: sequence (requests, sampling parameters, states), block_manager (paged KV
blocks), scheduler (iteration-level FCFS + preemption), request_level (the in-engine static
batching baseline), models/ (our compact decoders; attention backends: reference, batched,
flashinfer), model_runner (flattened batch, KV pool), memory (KV pool size from the tenant's
budget), sampler (per-request sampling), cuda_graph (decode graphs), engine (iteration loop and
the real-time arrival loop), hf_baseline (transformers `generate`), workload (arrivals, lengths,
traces), metrics (per-request records, summary), config, api (harness entry points), cli
(`tenancy serve`), tenant (the engine as a harness tenant).

Names are imported lazily so that `import tenancy.cli.serve` (CLI start-up) stays light.
"""
from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "ServingConfig": "config", "WorkloadConfig": "config", "SLOs": "config",
    "build_engine": "api", "run_serving": "api", "write_run": "api", "request_summary": "metrics",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"tenancy.serving.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tenancy.serving' has no attribute {name!r}")
