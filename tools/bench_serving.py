"""Serving benchmark: decode step and host cost per attention backend, iteration-level (Orca)
vs the in-engine request-level baseline at saturation and under Poisson load, nano-vllm's
offline shape, and decode steps against the memory-bandwidth floor. Prints tables; not a test.

    python tools/bench_serving.py --threads 1                       # everything, CPU defaults
    python tools/bench_serving.py --sections steps,saturation --device cuda
    python tools/bench_serving.py --sections offline --device cuda   # set beside nano-vllm / vLLM
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tenancy.serving import ServingConfig, build_engine, run_serving, request_summary
from tenancy.serving.model_runner import kv_bytes_per_block
from tenancy.serving.sequence import SamplingParams, Sequence

GPU_BANDWIDTH_GBS = {  # peak HBM bandwidth, GB/s (datasheets)
    "H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100": 3350,
    "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300,
    "A10G": 600, "A10": 600, "T4": 320, "V100": 900,
}


def table(title: str, columns: list[str], rows: list[list]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in r])
        Console(width=160).print(t)
    except ImportError:
        print(f"\n{title}\n" + " | ".join(columns))
        for r in rows:
            print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.current_stream().synchronize()


def bench_curve(args) -> None:
    """Same Poisson trace per rate for both engines: throughput and E2E latency."""
    engines, rows = {}, []
    for rate in args.rates:
        for name in ("iteration", "request"):
            cfg = ServingConfig(engine=name, model=args.model, size=args.size, dtype=args.dtype,
                                max_batch_size=args.max_batch_size, seed=args.seed,
                                attention_backend=args.backend, workload=dict(
                                    arrival="poisson", rate=rate, duration_s=args.duration,
                                    input_len=args.input_len, output_len=args.output_len, seed=args.seed))
            if name not in engines:
                engines[name] = build_engine(cfg, args.device)
            s = request_summary(run_serving(cfg, args.device, engine=engines[name]))
            rows.append([rate, name, f"{s['completed']}/{s['num_requests']}", s["request_throughput"],
                         s["output_throughput"], s["p50_ttft_ms"], s["p50_e2e_ms"], s["p99_e2e_ms"],
                         s["num_preemptions"]])
            print(f"rate {rate} {name}: done", flush=True)
    table(f"latency vs throughput ({args.model}/{args.size}, {args.device}, {args.duration:g}s of Poisson "
          f"arrivals, in {args.input_len} out {args.output_len}, B={args.max_batch_size})",
          ["rate/s", "engine", "done", "req/s", "out tok/s", "p50 TTFT ms", "p50 E2E ms", "p99 E2E ms", "preempt"],
          rows)


def _decoding_engine(args, n: int, prompt_len: int, steps: int, backend: str = "auto", spare: int = 0):
    """An engine with `n` requests in decode, each at context ~prompt_len, `steps` iterations timed
    (and `spare` more decode steps left to run)."""
    cfg = ServingConfig(model=args.model, size=args.size, dtype=args.dtype, max_batch_size=n,
                        max_tokens_per_iteration=max(2048, n * prompt_len), block_size=16, attention_backend=backend,
                        num_blocks=n * (-(-(prompt_len + steps + spare + 3) // 16)), seed=args.seed)
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
    postprocess + dispatch (aten ops per iteration x the measured cost of dispatching one)."""
    device = torch.device(args.device)
    op_us = per_op_dispatch_us(device)
    backends = args.backends.split(",")
    rows = []
    for backend in backends:
        base = None
        for n in args.decode_running:
            engine, ops = _decoding_engine(args, n, prompt_len=args.step_context, steps=args.steps, backend=backend)
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
        engine, _ = _decoding_engine(args, n, prompt_len=args.step_context, steps=0, backend="batched",
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


def bench_saturation(args) -> None:
    """All requests at once (Orca lengths): iteration-level vs the in-engine request-level baseline."""
    rows, out = [], {}
    for name in args.saturation_engines.split(","):
        cfg = ServingConfig(engine=name, model=args.model, size=args.size, dtype=args.dtype,
                            max_batch_size=args.max_batch_size, attention_backend=args.backend, seed=args.seed,
                            workload=dict(arrival="all_at_once", num_requests=args.saturation_requests,
                                          input_len=args.input_len, output_len=args.output_len, seed=args.seed))
        engine = build_engine(cfg, args.device)
        s = request_summary(run_serving(cfg, args.device, engine=engine))
        out[name] = s
        rows.append([name, f"{s['completed']}/{s['num_requests']}", s["duration_s"], s["output_throughput"],
                     s["output_throughput"] / out[next(iter(out))]["output_throughput"], s["p50_ttft_ms"],
                     s["p50_e2e_ms"], s["p99_e2e_ms"]])
        print(f"saturation {name}: done", flush=True)
    table(f"saturation ({args.model}/{args.size}, {args.device}, {args.saturation_requests} requests at t=0, "
          f"in {args.input_len} out {args.output_len}, B={args.max_batch_size})",
          ["engine", "done", "duration s", "out tok/s", "x first", "p50 TTFT ms", "p50 E2E ms", "p99 E2E ms"], rows)


def bench_offline(args) -> None:
    """nano-vllm's offline benchmark shape: 256 sequences, input and output lengths U[100, 1024]."""
    cfg = ServingConfig(model=args.model, size=args.size, dtype=args.dtype, max_batch_size=256,
                        max_tokens_per_iteration=16384, attention_backend=args.backend, seed=args.seed,
                        workload=dict(arrival="all_at_once", num_requests=256, input_len=(100, 1024),
                                      output_len=(100, 1024), seed=args.seed))
    engine = build_engine(cfg, args.device)
    s = request_summary(run_serving(cfg, args.device, engine=engine))
    table(f"offline, nano-vllm shape ({args.model}/{args.size} {args.dtype}, {args.device}, "
          f"{engine.runner.backend_name})", ["requests", "output tokens", "time s", "out tok/s"],
          [[s["completed"], s["total_output_tokens"], s["duration_s"], s["output_throughput"]]])


def measured_bandwidth_gbs(device: torch.device) -> float:
    """Streaming read bandwidth: sum over a 256 MiB tensor (best of 5)."""
    x = torch.ones(64 * 1024 * 1024, device=device)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best / 1e9


def bench_bandwidth(args) -> None:
    """Decode step time vs (weight bytes + KV bytes read) / bandwidth."""
    device = torch.device(args.device)
    if args.bandwidth_gbs:
        bw, source = args.bandwidth_gbs, "given"
    elif device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        bw = next((v for k, v in GPU_BANDWIDTH_GBS.items() if k in name), None)
        bw, source = (bw, f"datasheet {name}") if bw else (measured_bandwidth_gbs(device), "measured")
    else:
        bw, source = measured_bandwidth_gbs(device), "measured read"
    rows = []
    for n in args.decode_batches:
        engine, _ = _decoding_engine(args, n, prompt_len=args.context, steps=args.steps, backend=args.backend)
        model = engine.runner.model
        embeds = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
        lm_head = id(model.lm_head.weight)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters()  # lookups read ~nothing
                           if id(p) not in embeds or id(p) == lm_head)
        per_token = kv_bytes_per_block(engine.runner.kv_shape, 1, engine.runner.dtype)
        kv_bytes = n * (args.context + args.steps // 2 + 1) * per_token  # mean context over the steps
        step = sum(s.prepare_s + s.model_s for s in engine.stats) / len(engine.stats)
        floor = (weight_bytes + kv_bytes) / (bw * 1e9)
        rows.append([n, args.context, weight_bytes / 1e6, kv_bytes / 1e6, step * 1e3, floor * 1e3, step / floor])
    table(f"decode step vs bandwidth floor ({args.model}/{args.size} {args.dtype}, {args.device}, "
          f"{bw:.0f} GB/s {source})",
          ["batch", "context", "weights MB", "KV MB", "step ms", "floor ms", "ratio"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-3.2-1b")
    p.add_argument("--size", default="tiny", choices=["tiny", "full"])
    p.add_argument("--dtype", default=None, help="default float16 on cuda, float32 on cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--sections", default="steps,breakdown,saturation,curve,offline,bandwidth")
    p.add_argument("--backend", default="auto", help="attention backend for all but the steps section")
    p.add_argument("--backends", default=None, help="steps section (default: reference,batched[,flashinfer])")
    p.add_argument("--rates", default="2,4,8", type=lambda s: [float(x) for x in s.split(",")])
    p.add_argument("--duration", type=float, default=8.0, help="seconds of arrivals per rate")
    p.add_argument("--input-len", default="32-512")
    p.add_argument("--output-len", default="1-128")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--saturation-requests", type=int, default=256)
    p.add_argument("--saturation-engines", default="iteration,request", help="add hf for transformers generate")
    p.add_argument("--steps", type=int, default=50, help="decode iterations timed per point")
    p.add_argument("--decode-running", default="1,16,64,256", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--step-context", type=int, default=32, help="context length for the steps section")
    p.add_argument("--decode-batches", default="1,16,64", type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--context", type=int, default=256, help="context length for the bandwidth section")
    p.add_argument("--bandwidth-gbs", type=float, default=None, help="memory bandwidth (default: table/measured)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.dtype = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    if args.backends is None:
        args.backends = "reference,batched" + (",flashinfer" if args.device.startswith("cuda") else "")
    sections = {"steps": bench_steps, "breakdown": bench_breakdown, "saturation": bench_saturation, "curve": bench_curve,
                "offline": bench_offline, "bandwidth": bench_bandwidth}
    for section in args.sections.split(","):
        sections[section](args)


if __name__ == "__main__":
    main()
