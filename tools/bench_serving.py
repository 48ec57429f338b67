"""Serving benchmark: decode step and host cost per attention backend and where the step's time
goes (bench_decode.py), iteration-level (Orca) vs the in-engine request-level baseline at
saturation and under Poisson load, nano-vllm's offline shape, and decode steps against the
memory-bandwidth floor. Prints tables; not a test.

    python tools/bench_serving.py --threads 1                       # everything, CPU defaults
    python tools/bench_serving.py --sections steps,saturation --device cuda
    python tools/bench_serving.py --sections offline --device cuda   # set beside nano-vllm / vLLM
"""
from __future__ import annotations

import argparse
import time

import torch
from bench_common import sync, table
from bench_decode import bench_breakdown, bench_steps, decoding_engine

from tenancy.serving import ServingConfig, build_engine, request_summary, run_serving
from tenancy.serving.model_runner import kv_bytes_per_block

GPU_BANDWIDTH_GBS = {  # peak HBM bandwidth, GB/s (datasheets)
    "H200": 4800, "H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2000, "H100": 3350,
    "A100-SXM4-80GB": 2039, "A100 80GB PCIe": 1935, "A100": 1555, "L40S": 864, "L4": 300,
    "A10G": 600, "A10": 600, "T4": 320, "V100": 900,
}


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
        engine, _ = decoding_engine(args, n, prompt_len=args.context, steps=args.steps, backend=args.backend)
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
    p.add_argument("--weights", default="random", help="random, or an HF folder (tenancy/models/hf_folder.py builds one)")
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
