"""Workers of tools/bench_engines.py in tenancy's environment, one system per fresh process:
our engine offline (all requests at t=0), transformers `generate` on static left-padded batches,
and transformers continuous batching. Each reads the request set (JSON), times the whole set
(model load and warm-up off the clock), then one request's decode latency, and prints one JSON line.

    python tools/engines_workers.py ours|hf-static|hf-cb --model DIR --requests R.json --dtype float32
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch

Run = Callable[[list[dict]], list[list[int]]]  # requests -> each one's output token ids


def load(model_dir: str, dtype: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    model.generation_config.eos_token_id = None  # ignore EOS: every request runs to its length
    model.generation_config.pad_token_id = 0
    return model


def ours(args, reqs: list[dict]) -> Run:
    from tenancy.serving.api import llm_engine
    from tenancy.serving.config import ServingConfig
    from tenancy.serving.sequence import Sequence

    longest_prompt = max(max(len(r["prompt"]) for r in reqs), args.latency_prompt)
    longest_out = max(max(r["output_len"] for r in reqs), args.latency_output)
    cfg = ServingConfig(model="llama-3.2-1b", dtype=args.dtype, weights=args.model, ignore_eos=True,
                        max_batch_size=max(len(reqs), 1), max_tokens_per_iteration=max(2048, len(reqs)),
                        workload=dict(arrival="all_at_once", num_requests=1, input_len=longest_prompt,
                                      output_len=longest_out))
    engine = llm_engine(cfg, load(args.model, args.dtype))

    def run(batch: list[dict]) -> list[list[int]]:
        seqs = [Sequence(i, r["prompt"], engine.params(r["output_len"]), 0, engine.eos_ids) for i, r in enumerate(batch)]
        for s in seqs:
            if not engine.add(s, time.perf_counter_ns()):
                raise RuntimeError(f"our engine refused request {s.id}")
        while engine.has_work():
            engine.step()
        return [s.output_ids for s in seqs]
    return run


def hf_static(args, reqs: list[dict]) -> Run:
    model = load(args.model, args.dtype)

    def run(batch: list[dict]) -> list[list[int]]:
        out = []
        for i in range(0, len(batch), args.batch_size):
            part = batch[i:i + args.batch_size]
            width, n = max(len(r["prompt"]) for r in part), max(r["output_len"] for r in part)
            ids = torch.tensor([[0] * (width - len(r["prompt"])) + r["prompt"] for r in part])  # left padding
            mask = torch.tensor([[0] * (width - len(r["prompt"])) + [1] * len(r["prompt"]) for r in part])
            with torch.inference_mode():
                gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False)
            out += [gen[j, width:width + r["output_len"]].tolist() for j, r in enumerate(part)]
        return out
    return run


def hf_cb(args, reqs: list[dict]) -> Run:
    from transformers import GenerationConfig

    model = load(args.model, args.dtype)
    gc = GenerationConfig(do_sample=False, max_new_tokens=max(r["output_len"] for r in reqs), eos_token_id=-1,
                          pad_token_id=0)
    manager = model.init_continuous_batching(generation_config=gc)
    manager.start()

    def run(batch: list[dict]) -> list[list[int]]:
        ids = [manager.add_request(r["prompt"], request_id=f"r{time.perf_counter_ns()}_{i}",
                                   max_new_tokens=r["output_len"], eos_token_id=-1) for i, r in enumerate(batch)]
        done: dict[str, list[int]] = {}
        while len(done) < len(ids):
            res = manager.get_result(timeout=1)
            if res is None:
                if not manager.is_running():
                    raise RuntimeError("transformers continuous batching stopped")
            elif res.is_finished():
                if res.error:
                    raise RuntimeError(f"transformers continuous batching: {res.error}")
                done[res.request_id] = list(res.generated_tokens)
        return [done[i] for i in ids]
    return run


SYSTEMS = {"ours": ours, "hf-static": hf_static, "hf-cb": hf_cb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("system", choices=sorted(SYSTEMS))
    p.add_argument("--model", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch-size", type=int, default=16, help="hf-static: requests per padded batch")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--latency-prompt", type=int, default=32)
    p.add_argument("--latency-output", type=int, default=128)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reqs = json.loads(open(args.requests).read())
    run = SYSTEMS[args.system](args, reqs)
    run([{"prompt": list(range(3, 11)), "output_len": 4}])  # warm-up, off the clock
    t = time.perf_counter()
    tokens = run(reqs)
    elapsed = time.perf_counter() - t
    one = list(range(3, 3 + args.latency_prompt))

    def timed(n: int) -> float:
        t = time.perf_counter()
        run([{"prompt": one, "output_len": n}])
        return time.perf_counter() - t
    t1, tn = min(timed(1) for _ in range(2)), min(timed(args.latency_output) for _ in range(2))
    print(json.dumps({"system": args.system, "dtype": args.dtype, "elapsed_s": elapsed, "tokens": tokens,
                      "latency_ms_per_token": (tn - t1) / (args.latency_output - 1) * 1e3,
                      "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
