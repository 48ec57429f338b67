"""Our engine vs vLLM CPU vs transformers on one random-weight model and one request set: each
system in its own fresh process, interleaved over rounds (so a busy machine hits all alike);
output and total tok/s, ours/vLLM per round, one request's decode ms/token; every output checked
for its exact length, our greedy tokens compared with transformers'. Writes
results/engines-<date>/table.md and raw.json.

    python tools/bench_engines.py                                  # defaults: 64 requests, 3 rounds
    python tools/bench_engines.py --requests 8 --rounds 1 --dtypes float32 --systems ours,hf-static
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_common import table
from engines_report import agreement, length_errors, make_requests, summarize, throughput

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), platform.processor())
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []))
    return {"cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


def worker_cmd(system: str, args, req_file: str, dtype: str) -> list[str]:
    common = ["--model", str(args.model), "--requests", req_file, "--dtype", dtype,
              "--latency-prompt", str(args.latency_prompt), "--latency-output", str(args.latency_output)]
    if system == "vllm":
        py = subprocess.run(["bash", str(HERE / "vllm_cpu.sh"), "python"], capture_output=True, text=True)
        if py.returncode:
            raise SystemExit("error: vLLM CPU is not installed: run tools/vllm_cpu.sh install")
        return [py.stdout.strip(), str(HERE / "engines_vllm.py"), *common]
    return [sys.executable, str(HERE / "engines_workers.py"), system, *common, "--threads", str(args.threads),
            "--batch-size", str(args.batch_size)]


def run_one(system: str, args, req_file: str, dtype: str) -> dict:
    """One system in a fresh process; its last stdout line is its JSON (or an error row)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), VLLM_CPU_KVCACHE_SPACE=str(args.vllm_kv_gb),
               OMP_NUM_THREADS=str(args.threads))
    load0 = os.getloadavg()[0]
    try:
        p = subprocess.run(worker_cmd(system, args, req_file, dtype), capture_output=True, text=True, env=env,
                           timeout=args.timeout)
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{\"system\"")]
        res = json.loads(lines[-1]) if lines else {"error": (p.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    except subprocess.TimeoutExpired:
        res = {"error": f"timed out after {args.timeout} s"}
    return {**res, "system": system, "dtype": dtype, "load_before": load0, "load_after": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None, help="HF folder (default: build SMALL_LLAMA)")
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--prompt-len", default="32-256")
    p.add_argument("--output-len", default="32-256")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--systems", default="ours,vllm,hf-static",
                   help="also hf-cb: transformers continuous batching (hung on this CPU: see table.md notes)")
    p.add_argument("--batch-size", type=int, default=16, help="transformers static batches")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every system (vLLM CPU takes 1 of 2 cores)")
    p.add_argument("--latency-prompt", type=int, default=32)
    p.add_argument("--latency-output", type=int, default=128)
    p.add_argument("--vllm-kv-gb", type=float, default=2)
    p.add_argument("--timeout", type=int, default=900, help="seconds per worker process")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "results" / f"engines-{dt.date.today():%Y-%m-%d}")
    args = p.parse_args()
    try:
        lens = [tuple(int(x) for x in s.split("-")) for s in (args.prompt_len, args.output_len)]
        assert all(len(x) == 2 and 1 <= x[0] <= x[1] for x in lens)
    except (ValueError, AssertionError):
        raise SystemExit("error: --prompt-len/--output-len are LO-HI with 1 <= LO <= HI") from None
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from tenancy.models.hf_folder import SMALL_LLAMA, build_folder

            args.model = build_folder(Path(tmp) / "model", SMALL_LLAMA, seed=args.seed)
        if not (args.model / "config.json").exists():
            raise SystemExit(f"error: {args.model} has no config.json")
        vocab = json.loads((args.model / "config.json").read_text())["vocab_size"]
        reqs = make_requests(args.requests, lens[0], lens[1], vocab, args.seed)
        req_file = str(Path(tmp) / "requests.json")
        Path(req_file).write_text(json.dumps(reqs))
        results = []
        for rnd in range(args.rounds):
            for dtype in args.dtypes.split(","):
                for system in args.systems.split(","):
                    r = run_one(system, args, req_file, dtype)
                    r["round"] = rnd
                    print(json.dumps({k: v for k, v in r.items() if k != "tokens"}), flush=True)  # kept if cut off
                    results.append(r)
    report(args, reqs, results)


def report(args, reqs: list[dict], results: list[dict]) -> None:
    m, rows, notes = machine(), [], []
    for r in results:
        if "error" in r:
            notes.append(f"{r['system']} {r['dtype']} round {r['round']}: failed: {r['error']}")
            continue
        bad = length_errors(reqs, r["tokens"])
        notes += [f"{r['system']} {r['dtype']} round {r['round']}: {e}" for e in bad[:3]]
        out_tps, total_tps = throughput(reqs, r["elapsed_s"])
        rows.append({"dtype": r["dtype"], "system": r["system"], "round": r["round"], "out_tps": out_tps,
                     "total_tps": total_tps, "latency_ms": r["latency_ms_per_token"], "lengths_ok": not bad,
                     "load_before": r["load_before"], "load_after": r["load_after"]})
    first = {(r["system"], r["dtype"]): r for r in results if "error" not in r}
    for other in ("hf-static", "hf-cb", "vllm"):
        a, b = first.get(("ours", "float32")), first.get((other, "float32"))
        if a and b:
            same, frac, div = agreement(a["tokens"], b["tokens"])
            apart = [d for d, x in zip(div, a["tokens"]) if d < len(x)]
            where = f"; the others diverge first at token {min(apart)}" if apart else ""
            notes.append(f"greedy float32 ours vs {other}: {same:.0%} of requests identical, {frac:.0%} of tokens "
                         f"before the first divergence{where}")
    summary = summarize(rows)
    cols = ["dtype", "system", "rounds", "out tok/s", "total tok/s", "decode ms/token (1 req)", "ours/vLLM out per round"]
    body = [[s["dtype"], s["system"], s["rounds"], s["out_tps"], s["total_tps"], s["latency_ms"], s["ours_over_ref"]]
            for s in summary]
    bf16 = "native (avx512_bf16)" if m["avx512_bf16"] or m["amx_bf16"] else "emulated (no avx512_bf16/amx_bf16)"
    title = (f"{len(reqs)} requests at t=0, prompt {args.prompt_len} output {args.output_len}, ignore EOS, greedy; "
             f"{args.threads} torch thread(s) each; median (min-max) of rounds")
    table(title, cols, body)
    head = [f"# Engines: ours vs vLLM CPU vs transformers ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
            f"Machine: {m['cpu']}, {m['cores']} cores (shared container), torch {m['torch']}, "
            f"CPU capability {m['cpu_capability']}, bf16 {bf16}.", "", f"{title}.", "",
            "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines = head + ["| " + " | ".join(str(c) for c in row) + " |" for row in body] + ["", "Per round (load average 1 min before/after):", ""]
    lines += [f"- round {r['round']} {r['dtype']} {r['system']}: {r['out_tps']:.3g} out tok/s, lengths "
              f"{'exact' if r['lengths_ok'] else 'WRONG'}, load {r['load_before']:.2f} -> {r['load_after']:.2f}" for r in rows]
    lines += ["", *[f"- {n}" for n in notes]]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "raw.json").write_text(json.dumps({"machine": m, "args": {k: str(v) for k, v in vars(args).items()},
                                                   "rounds": rows}, indent=1))
    print("\n".join(notes))
    print(f"wrote {args.out}/table.md")


if __name__ == "__main__":
    main()
