"""The iteration-level engine (Orca) and the real-time loop that feeds it arrivals.

`LLMEngine.step()` is one model iteration: schedule -> flatten -> forward -> sample ->
postprocess. A finished request leaves right after the iteration that produced its last token;
a request that arrived meanwhile joins at the next iteration Under async scheduling (CUDA) the
postprocess is split: the host schedules and launches iteration N+1 while the GPU still runs N,
whose tokens N+1 reads on the device; N's tokens reach the host (one event wait) after N+1 is
queued, and an EOS found then drops that request's look-ahead row (as vLLM's async scheduling).

`serve()` drives any engine with the same small interface (make_sequence / add / has_work /
step), so the request-level baseline is measured by exactly the same loop: a clock starts at
`start_ns` (time.perf_counter_ns), requests become visible at their arrival times, and when
nothing is running the loop sleeps until the next arrival. Latencies are therefore real.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Protocol

import torch

from tenancy.serving.block_manager import BlockManager
from tenancy.serving.config import ServingConfig
from tenancy.serving.model_runner import InFlight, ModelRunner
from tenancy.serving.models import max_model_len
from tenancy.serving.request_level import RequestScheduler
from tenancy.serving.scheduler import Scheduler
from tenancy.serving.sequence import SamplingParams, Sequence
from tenancy.serving.workload import RequestSource, RequestSpec


@dataclass
class IterationStats:
    """Wall time of each phase of one iteration (seconds); model_s includes sampling (under
    async scheduling, only its launch: the wait for the previous iteration's tokens is in post_s)."""

    schedule_s: float
    prepare_s: float
    model_s: float
    post_s: float
    num_seqs: int
    num_tokens: int
    num_preempted: int

    @property
    def overhead_s(self) -> float:
        return self.schedule_s + self.prepare_s + self.post_s


class Engine(Protocol):
    name: str

    def make_sequence(self, spec: RequestSpec, arrival_ns: int) -> Sequence: ...
    def add(self, seq: Sequence, now_ns: int) -> bool: ...
    def has_work(self) -> bool: ...
    def step(self) -> list[Sequence]: ...


def eos_ids(config) -> frozenset[int]:
    """Every EOS id of a config (Llama-3-Instruct lists several)."""
    eos = config.eos_token_id
    return frozenset(() if eos is None else eos if isinstance(eos, (list, tuple)) else (eos,))


class LLMEngine:
    """`engine: iteration` (Orca) or, with the request-level scheduler, `engine: request`."""

    def __init__(self, hf_model: torch.nn.Module, cfg: ServingConfig, max_seq_len: Optional[int] = None,
                 mem_limit_bytes: Optional[int] = None):
        self.cfg, self.name = cfg, cfg.engine
        limit = max_model_len(hf_model.config)
        cap = None
        if max_seq_len is not None:  # no point in a pool larger than a full batch of the longest request
            cap = cfg.max_batch_size * -(-max_seq_len // cfg.block_size)
        longest = min((x for x in (max_seq_len, limit) if x is not None), default=None)
        self.runner = ModelRunner(hf_model, cfg, cap, mem_limit_bytes, longest)
        self.block_manager = BlockManager(self.runner.num_blocks, cfg.block_size, cfg.kv_policy)
        kind = RequestScheduler if cfg.engine == "request" else Scheduler
        self.scheduler = kind(self.block_manager, cfg.max_batch_size, cfg.max_tokens_per_iteration,
                              cfg.chunked_prefill, limit, self.runner.model.sliding_window)
        self.vocab_size = hf_model.config.vocab_size
        self.eos_ids = eos_ids(hf_model.config)
        # async scheduling (CUDA, iteration engine): the host sync is deferred past the next
        # schedule; the request-level baseline's padding rows keep it synchronous
        self.async_scheduling = cfg.async_scheduling and self.runner.device.type == "cuda" and cfg.engine == "iteration"
        self.in_flight: Optional[InFlight] = None
        self.stats: list[IterationStats] = []
        self.record_stats = False

    def params(self, max_tokens: int) -> SamplingParams:
        """The config's sampling parameters for a request of `max_tokens` output tokens."""
        c = self.cfg
        return SamplingParams(max_tokens, c.temperature, c.top_p, c.top_k, None, c.ignore_eos)

    def make_sequence(self, spec: RequestSpec, arrival_ns: int) -> Sequence:
        return Sequence(spec.id, spec.prompt, self.params(spec.output_len), arrival_ns, self.eos_ids)

    def add(self, seq: Sequence, now_ns: int) -> bool:
        return self.scheduler.add(seq, now_ns)

    def has_work(self) -> bool:
        return self.scheduler.has_work() or self.in_flight is not None

    def step(self) -> list[Sequence]:
        """One iteration. Returns the requests that finished in it (under async scheduling: in
        the iteration before, whose tokens this one reads after launching its own)."""
        t0 = time.perf_counter()
        sched, prev = self.scheduler, self.in_flight
        batch = sched.schedule(time.perf_counter_ns())
        if not batch:
            if prev is not None:  # nothing new to launch: read the iteration still in flight
                self.in_flight = None
                return sched.commit(prev.emitting, prev.tokens(), time.perf_counter_ns())
            if sched.waiting and not sched.running and not batch.num_preempted:
                # cannot happen for requests that passed add(); never spin on one that would
                sched.waiting.popleft().fail("could not be scheduled on an empty engine", time.perf_counter_ns())
            return []
        t1 = time.perf_counter()
        prepared = self.runner.prepare(batch, prev)  # includes the attention backend's plan()
        t2 = time.perf_counter()
        flight = self.runner.launch(prepared)
        if self.async_scheduling:  # the GPU runs this iteration while the host reads the last one
            t3 = time.perf_counter()
            finished = sched.commit(prev.emitting, prev.tokens(), time.perf_counter_ns()) if prev else []
            sched.advance(batch, prepared.emitting)
            self.in_flight = flight
        else:
            tokens = flight.tokens()  # the one host sync: tokens are on the host
            t3 = time.perf_counter()
            finished = sched.postprocess(batch, tokens, time.perf_counter_ns())
        if self.record_stats:
            self.stats.append(IterationStats(t1 - t0, t2 - t1, t3 - t2, time.perf_counter() - t3,
                                             len(batch), batch.num_tokens, batch.num_preempted))
        return finished

    def warmup(self, prompt_len: int = 8, new_tokens: int = 2) -> None:
        """One small request through every phase (lazy init, allocator, kernels), off the clock."""
        seq = Sequence(-1, list(range(3, 3 + prompt_len)), SamplingParams(new_tokens))
        if self.add(seq, 0):
            while not seq.done:
                self.step()


def serve(engine: Engine, specs: list[RequestSpec], concurrency: Optional[int] = None,
          start_ns: Optional[int] = None) -> tuple[list[Sequence], int]:
    """Run `specs` in real time; returns every request (each ended exactly once) and the clock
    start t0 in perf_counter_ns. A `start_ns` in the future is waited for; in the past, requests
    whose arrival has already passed are due at once."""
    t0 = time.perf_counter_ns() if start_ns is None else start_ns
    while (wait := t0 - time.perf_counter_ns()) > 0:
        time.sleep(wait / 1e9)
    source = RequestSource(specs, concurrency)
    seqs: list[Sequence] = []
    try:
        _loop(engine, source, seqs, t0)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: what arrived so far is the result
        now = time.perf_counter_ns()
        for seq in seqs:
            if not seq.done:
                seq.fail("interrupted", now)
        raise ServeInterrupted(seqs, t0) from None
    return seqs, t0


class ServeInterrupted(KeyboardInterrupt):
    """An interrupted `serve`, carrying every request that had arrived (unfinished ones failed
    with "interrupted"), so that the caller can write them before exiting."""

    def __init__(self, seqs: list[Sequence], t0: int) -> None:
        super().__init__("interrupted")
        self.seqs, self.t0 = seqs, t0


def _loop(engine: Engine, source: RequestSource, seqs: list[Sequence], t0: int) -> None:
    while True:
        now = time.perf_counter_ns()
        for spec in source.due((now - t0) / 1e9):
            seq = engine.make_sequence(spec, t0 + round(source.arrival_s(spec) * 1e9))
            seqs.append(seq)
            if not engine.add(seq, now):
                source.finished()  # rejected: ended at once
        if engine.has_work():
            source.finished(len(engine.step()))
            continue
        nxt = source.next_arrival_s()
        if nxt is None:
            if source.exhausted():
                break
            raise RuntimeError("closed loop stalled: nothing running and no credit to release a request")
        if (wait := t0 + nxt * 1e9 - time.perf_counter_ns()) > 0:
            time.sleep(wait / 1e9)
