"""Entry points for the CLI and the measurement harness: build an engine, run a benchmark,
write a run directory. Building (model, KV pool, warm-up) is separate from running so a harness
can build first and start the workload clock after a multi-process barrier."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Union

import pandas as pd

from tenancy.serving import workload
from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import Engine, LLMEngine, ServeInterrupted, serve
from tenancy.serving.hf_baseline import HFEngine
from tenancy.serving.metrics import request_summary, to_frame


def build_engine(cfg: ServingConfig, device: str = "cpu", hf_model=None,
                 mem_limit_bytes: Optional[int] = None) -> Union[LLMEngine, HFEngine]:
    """Model (random or given weights) + engine, warmed up. `hf_model` overrides cfg.model;
    `mem_limit_bytes` (a tenant's MPS pinned-memory limit) bounds the KV pool (memory.py)."""
    from tenancy.models import zoo

    if hf_model is None:
        hf_model = zoo.build(cfg.model, cfg.size, cfg.dtype_on(device), device, cfg.weights, cfg.seed)
    if cfg.engine == "hf":
        engine = HFEngine(hf_model, cfg)
        engine.warmup()
        return engine
    return llm_engine(cfg, hf_model, mem_limit_bytes)


def llm_engine(cfg: ServingConfig, hf_model, mem_limit_bytes: Optional[int] = None) -> LLMEngine:
    """Our engine (iteration or request level) on a built model, sized for the workload's longest
    request and warmed up."""
    engine = LLMEngine(hf_model, cfg, max_seq_len=workload.longest(cfg.workload), mem_limit_bytes=mem_limit_bytes)
    engine.warmup()
    return engine


def engine_info(engine: Engine) -> dict:
    """What actually ran, for the manifest: backend (and why `auto` fell back), GPU loop switches."""
    runner = getattr(engine, "runner", None)
    if runner is None:
        return {"engine": engine.name}
    return {"engine": engine.name, "attention_backend": runner.backend_name, "attention_note": runner.backend_note,
            "cuda_graphs": runner.graphs is not None, "pinned_staging": runner.pinned,
            "async_scheduling": engine.async_scheduling,
            "num_blocks": runner.num_blocks, "block_size": runner.block_size}


def run_serving(cfg: ServingConfig, device: str = "cpu", start_ns: Optional[int] = None,
                engine: Optional[Engine] = None) -> pd.DataFrame:
    """Run the configured workload in real time; one row per request (see metrics.py).
    `start_ns` (time.perf_counter_ns) is when the workload clock starts; default: now."""
    if engine is None:
        engine = build_engine(cfg, device)
    specs = workload.generate(cfg.workload, engine.vocab_size)
    closed = cfg.workload.arrival == "closed" and cfg.workload.trace is None
    try:
        seqs, t0 = serve(engine, specs, cfg.workload.concurrency if closed else None, start_ns)
    except ServeInterrupted as stop:  # the caller writes what arrived before it exits
        stop.frame = to_frame(stop.seqs, stop.t0, engine.name, tokens=cfg.save_tokens)
        raise
    return to_frame(seqs, t0, engine.name, tokens=cfg.save_tokens)


def write_run(out_dir: Union[str, Path], cfg: ServingConfig, df: pd.DataFrame, device: str,
              extra: Optional[dict] = None, interrupted: bool = False) -> dict:
    """A `tenancy serve` run directory (results.write_serving); returns its summary row."""
    from tenancy.core import results
    from tenancy.gpu import environment

    summary = {"engine": cfg.engine, "model": cfg.model, "size": cfg.size, **request_summary(df, cfg.slos)}
    ok = len(df) > 0 and (df["status"] == "finished").all()
    status = "interrupted" if interrupted else "complete" if ok else "failed"
    results.write_serving(Path(out_dir), df, summary, {
        "status": status, "device": device, "config": json.loads(cfg.model_dump_json()),
        "environment": environment.collect(), **(extra or {})})
    return summary
