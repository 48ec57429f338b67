"""Pure logic of tools/bench_engines.py (tested on synthetic numbers): the seeded request set,
output-length checks, greedy agreement, and the per-system summary (median, min, max over rounds)
with the ours/vLLM ratio per round."""
from __future__ import annotations

import random
import statistics


def make_requests(n: int, prompt: tuple[int, int], output: tuple[int, int], vocab: int, seed: int) -> list[dict]:
    """`n` requests of random token ids (3.. vocab-1: past the specials), lengths uniform in the
    inclusive ranges; the same seed gives the same set."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        plen, olen = rng.randint(*prompt), rng.randint(*output)
        out.append({"id": i, "prompt": [rng.randrange(3, vocab) for _ in range(plen)], "output_len": olen})
    return out


def length_errors(reqs: list[dict], tokens: list[list[int]]) -> list[str]:
    """One line per request whose output is not exactly its requested length."""
    if len(tokens) != len(reqs):
        return [f"{len(tokens)} outputs for {len(reqs)} requests"]
    return [f"request {r['id']}: {len(t)} tokens, asked {r['output_len']}"
            for r, t in zip(reqs, tokens) if len(t) != r["output_len"]]


def first_divergence(a: list[int], b: list[int]) -> int:
    """Index of the first differing token (the common length where one is a prefix of the other)."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[float, float, list[int]]:
    """(fraction of requests identical, fraction of tokens before the first divergence, where
    each request diverges: its length where it does not)."""
    div = [first_divergence(x, y) for x, y in zip(a, b)]
    same = sum(d == len(x) == len(y) for d, x, y in zip(div, a, b))
    total = sum(max(len(x), len(y)) for x, y in zip(a, b))
    return same / max(len(a), 1), sum(div) / max(total, 1), div


def throughput(reqs: list[dict], elapsed_s: float) -> tuple[float, float]:
    """(output tok/s, total tok/s) of the whole set: requested tokens only, so padding is no work."""
    out = sum(r["output_len"] for r in reqs)
    return out / elapsed_s, (out + sum(len(r["prompt"]) for r in reqs)) / elapsed_s


def spread(values: list[float]) -> str:
    """'median (min-max)' of the rounds, or '-' for none."""
    if not values:
        return "-"
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def summarize(rows: list[dict], reference: str = "vllm", ours: str = "ours") -> list[dict]:
    """One row per (dtype, system) from per-round rows {dtype, system, round, out_tps, total_tps,
    latency_ms}: medians with min/max, and ours/reference output tok/s per round (same round,
    so both ran under the same load)."""
    table = []
    for dtype in dict.fromkeys(r["dtype"] for r in rows):
        mine = [r for r in rows if r["dtype"] == dtype]
        by_round = {(r["system"], r["round"]): r["out_tps"] for r in mine}
        ratios = [by_round[(ours, k)] / by_round[(reference, k)] for (s, k) in by_round
                  if s == ours and (reference, k) in by_round]
        for system in dict.fromkeys(r["system"] for r in mine):
            rs = [r for r in mine if r["system"] == system]
            table.append({"dtype": dtype, "system": system, "rounds": len(rs),
                          "out_tps": spread([r["out_tps"] for r in rs]),
                          "total_tps": spread([r["total_tps"] for r in rs]),
                          "latency_ms": spread([r["latency_ms"] for r in rs]),
                          "ours_over_ref": " ".join(f"{x:.2f}" for x in ratios) if system == ours else ""})
    return table
