"""Seeded request workloads: arrival processes, lengths, random prompts, and a request source.

Arrivals (seconds from the start of the benchmark clock):
- poisson: exponential gaps at `rate`.
- gamma: gamma gaps with shape `burstiness` and scale 1/(rate*shape) (mean rate kept;
  shape < 1 is burstier, as `vllm bench serve --burstiness`).
- sinusoidal: a Poisson process with rate(t) = rate*(1 + amplitude*sin(2πt/period)), drawn by
  thinning a Poisson process at the peak rate (for autoscaling studies).
- all_at_once: everything at t=0.
- closed: a fixed `concurrency` of requests in flight; a new one arrives when one finishes.
Lengths are fixed or uniform [lo, hi] (Orca: input U[32,512], output U[1,128]), or come from a
JSONL trace (one {"arrival_s", "input_len", "output_len"} per line). Prompts are random token
ids in [3, vocab) (never zeros: zeros hide bugs and can run faster than real data).
"""
from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from tenancy.serving.config import Length, WorkloadConfig


@dataclass(frozen=True)
class RequestSpec:
    id: int
    arrival_s: Optional[float]  # None: released by the closed loop
    prompt: list[int]
    output_len: int


def arrival_times(cfg: WorkloadConfig, rng: np.random.Generator, n: Optional[int]) -> np.ndarray:
    """`n` arrival times, or all arrivals before `cfg.duration_s` when n is None."""
    horizon = cfg.duration_s if n is None else math.inf
    if cfg.arrival == "all_at_once":
        return np.zeros(n if n is not None else 1)
    out: list[float] = []
    t, peak = 0.0, cfg.rate * (1 + cfg.amplitude)
    while n is None or len(out) < n:
        if cfg.arrival == "poisson":
            t += rng.exponential(1.0 / cfg.rate)
        elif cfg.arrival == "gamma":
            t += rng.gamma(cfg.burstiness, 1.0 / (cfg.rate * cfg.burstiness))
        elif cfg.arrival == "sinusoidal":
            t += rng.exponential(1.0 / peak)
            rate_t = cfg.rate * (1 + cfg.amplitude * math.sin(2 * math.pi * t / cfg.period_s))
            if rng.random() * peak > rate_t:
                continue  # thinned out
        else:
            raise ValueError(f"no arrival times for {cfg.arrival!r}")
        if t >= horizon:
            break
        out.append(t)
    return np.asarray(out)


def _lengths(spec: Length, rng: np.random.Generator, n: int) -> np.ndarray:
    if isinstance(spec, int):
        return np.full(n, spec)
    return rng.integers(spec[0], spec[1] + 1, size=n)


def load_trace(path: Path) -> list[tuple[float, int, int]]:
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            rows.append((float(r["arrival_s"]), int(r["input_len"]), int(r["output_len"])))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: need arrival_s, input_len, output_len ({e})") from None
        if rows[-1][0] < 0 or rows[-1][1] < 1 or rows[-1][2] < 1:
            raise ValueError(f"{path}:{i}: negative arrival or length < 1")
    if not rows:
        raise ValueError(f"{path}: empty trace")
    return sorted(rows, key=lambda r: r[0])


def _draws(cfg: WorkloadConfig) -> tuple[list, list[int], list[int]]:
    """Arrivals, input and output lengths: everything of the requests but their prompts."""
    if cfg.trace is not None:
        rows = load_trace(cfg.trace)
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    rng = np.random.default_rng(cfg.seed)
    if cfg.arrival == "closed":
        arrivals = [None] * cfg.num_requests
    else:
        n = None if cfg.duration_s is not None and cfg.arrival != "all_at_once" else cfg.num_requests
        arrivals = arrival_times(cfg, rng, n).tolist()
    return arrivals, _lengths(cfg.input_len, rng, len(arrivals)).tolist(), \
        _lengths(cfg.output_len, rng, len(arrivals)).tolist()


def longest(cfg: WorkloadConfig) -> int | None:
    """The longest request (prompt + output tokens) `generate` will make, without drawing prompts."""
    _, ins, outs = _draws(cfg)
    return max(map(sum, zip(ins, outs)), default=None)


def generate(cfg: WorkloadConfig, vocab_size: int) -> list[RequestSpec]:
    """The benchmark's requests, sorted by arrival. Same config and seed, same requests."""
    arrivals, ins, outs = _draws(cfg)
    prompt_rng = np.random.default_rng([cfg.seed, 1])  # prompts independent of the arrival draws
    return [RequestSpec(i, a, prompt_rng.integers(3, vocab_size, size=k).tolist(), o)
            for i, (a, k, o) in enumerate(zip(arrivals, ins, outs))]


class RequestSource:
    """Releases requests to an engine as the benchmark clock passes their arrival times; in
    closed-loop mode it keeps `concurrency` requests in flight instead."""

    def __init__(self, specs: list[RequestSpec], concurrency: Optional[int] = None):
        self.pending = deque(sorted(specs, key=lambda s: (s.arrival_s or 0.0, s.id)))
        self.closed = concurrency is not None
        self.credits = concurrency or 0  # closed loop: how many may be released now
        self.release_s: dict[int, float] = {}

    def due(self, now_s: float) -> list[RequestSpec]:
        out = []
        while self.pending:
            spec = self.pending[0]
            if self.closed:
                if self.credits <= 0:
                    break
                self.credits -= 1
                self.release_s[spec.id] = now_s
            elif spec.arrival_s > now_s:
                break
            out.append(self.pending.popleft())
        return out

    def arrival_s(self, spec: RequestSpec) -> float:
        return self.release_s[spec.id] if self.closed else spec.arrival_s

    def next_arrival_s(self) -> Optional[float]:
        """When the next request arrives on its own; None if only a finish can release one."""
        if not self.pending or (self.closed and self.credits <= 0):
            return None
        return 0.0 if self.closed else self.pending[0].arrival_s

    def finished(self, count: int = 1) -> None:
        if self.closed:
            self.credits += count

    def exhausted(self) -> bool:
        return not self.pending
