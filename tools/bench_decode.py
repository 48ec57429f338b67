"""Decode-step benchmarks (sections `steps` and `breakdown` of bench_serving.py): the step at N
running requests per attention backend with its host cost, and where its time goes."""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench_common import sync, table
from tenancy.serving import ServingConfig, build_engine
from tenancy.serving.sequence import SamplingParams, Sequence


def decoding_engine(args, n: int, prompt_len: int, steps: int, backend: str = "auto", spare: int = 0):
    """An engine with `n` requests in decode, each at context ~prompt_len, `steps` iterations timed
    (and `spare` more decode steps left to run)."""
    cfg = ServingConfig(model=args.model, size=args.size, dtype=args.dtype, max_batch_size=n,
                        max_tokens_per_iteration=max(2048, n * prompt_len), block_size=16, attention_backend=backend,
                        num_blocks=n * (-(-(prompt_len + steps + spare + 3) // 16)), seed=args.seed,
                        weights=getattr(args, "weights", "random"))
    engine = build_engine(cfg, args.device)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        engine.add(Sequence(i, torch.randint(3, engine.vocab_size, (prompt_len,), generator=g).tolist(),
                            SamplingParams(steps + spare + 3)), 0)
    engine.step()  # all prefills
    engine.step()  # first decode, off the record
    ops = count_ops(engine)  # one decode iteration, counted (not timed)
    engine.record_stats = True
    for _ in range(steps):
        engine.step()
    return engine, ops


class _CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def count_ops(engine) -> int:
    """aten ops one decode iteration dispatches (model, attention, sampling)."""
    with _CountOps() as c:
        engine.step()
    return c.n


def per_op_dispatch_us(device: torch.device, n: int = 20000) -> float:
    """Host cost of dispatching one near-empty aten op (an in-place add on one element)."""
    x = torch.zeros(1, device=device)
    with torch.inference_mode():
        for _ in range(100):
            x.add_(1)
        sync(device)
        t = time.perf_counter()
        for _ in range(n):
            x.add_(1)
        dt = time.perf_counter() - t
        sync(device)
    return dt / n * 1e6


def bench_steps(args) -> None:
    """Decode step vs running requests, per backend; host cost = scheduling + prepare/plan +
    postprocess + dispatch (aten ops per iteration x the measured cost of dispatching one). On
    CUDA under async scheduling, model+sample is the launch only and the wait for the previous
    iteration's tokens lands in postprocess; the step (their sum) is the iteration's wall time."""
    device = torch.device(args.device)
    op_us = per_op_dispatch_us(device)
    backends = args.backends.split(",")
    rows = []
    for backend in backends:
        base = None
        for n in args.decode_running:
            engine, ops = decoding_engine(args, n, prompt_len=args.step_context, steps=args.steps, backend=backend)
            st = engine.stats
            assert all(s.num_seqs == n for s in st)
            med = lambda f: statistics.median(f(s) for s in st) * 1e3  # noqa: E731 (median: robust to a busy box)
            step = med(lambda s: s.overhead_s + s.model_s)
            base = step if base is None else base
            host_engine = med(lambda s: s.overhead_s)
            dispatch = ops * op_us / 1e3
            rows.append([engine.runner.backend_name, n, step, step / base, med(lambda s: s.schedule_s),
                         med(lambda s: s.prepare_s), med(lambda s: s.post_s), med(lambda s: s.model_s), ops,
                         dispatch, host_engine + dispatch])
    table(f"decode step vs running ({args.model}/{args.size}, {args.device}, context ~{args.step_context}, ms, "
          f"median of {args.steps}; dispatch = ops x {op_us:.2f} us measured per near-empty op)",
          ["backend", "running", "step", "x step@1", "schedule", "prepare+plan", "postprocess", "model+sample",
           "aten ops", "dispatch", "host total"], rows)


CATEGORIES = {  # aten op -> where a decode iteration's time goes
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_efficient_attention",
                  "aten::_scaled_dot_product_flash_attention", "aten::_scaled_dot_product_cudnn_attention"),
    "KV gather+store": ("aten::index_select", "aten::index_copy_"),
}


def bench_breakdown(args) -> None:
    """Where the decode step's time goes, and what each extra running request adds: the work
    proportional to the batch against the fixed cost. Host phases and model+sample are timed
    (medians); the model's aten ops by kind are torch.profiler CPU self times of the next steps."""
    from torch.profiler import ProfilerActivity, profile

    k, rows, per = max(args.steps // 2, 1), [], {}
    for n in args.decode_running:
        engine, _ = decoding_engine(args, n, prompt_len=args.step_context, steps=0, backend="batched",
                                     spare=2 * k)
        engine.record_stats = True
        for _ in range(k):
            engine.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(k):
                engine.step()
        st = engine.stats[:k]
        med = lambda f: statistics.median(f(s) for s in st) * 1e3  # noqa: E731
        cats = dict.fromkeys([*CATEGORIES, "other aten"], 0.0)
        for e in prof.key_averages():
            cat = next((c for c, ops in CATEGORIES.items() if e.key in ops), "other aten")
            cats[cat] += e.self_cpu_time_total / 1e3 / k
        per[n] = [med(lambda s: s.overhead_s + s.model_s), med(lambda s: s.overhead_s), med(lambda s: s.model_s),
                  *cats.values()]
        rows.append([str(n), *per[n]])
    lo, hi = min(per), max(per)
    if hi > lo:
        rows.append([f"us/request {lo}->{hi}", *[(b - a) * 1e3 / (hi - lo) for a, b in zip(per[lo], per[hi])]])
        rows.append(["5x budget, us/request", (5 - 1) * per[lo][0] * 1e3 / (hi - lo), *[""] * 6])
    table(f"decode step breakdown (batched, {args.model}/{args.size}, {args.device}, context ~{args.step_context}, "
          f"ms per iteration, medians of {k}; aten kinds: profiler self time of {k} more)",
          ["running", "step", "host", "model+sample", *CATEGORIES, "other aten"], rows)
