"""Async scheduling (the deferred host sync): iteration N+1 is scheduled and launched before N's
tokens are read, N+1 reads N's tokens on the device. On a CPU the tokens are ready at once, so
these tests switch the engine's path on by hand and check what the GPU path relies on: the same
tokens as the synchronous engine and transformers (joins, preemption, both KV policies, chunked
prefill, sliding window, EOS), one read per iteration and always after the next launch."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tenancy.serving.block_manager import BlockManager
from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import LLMEngine
from tenancy.serving.model_runner import InFlight
from tenancy.serving.scheduler import Scheduler
from tenancy.serving.sequence import PENDING, SamplingParams, Sequence, Status

sys.path.insert(0, str(Path(__file__).parent))
from test_serving_engine import FAMILIES, SCENARIOS, hf_greedy, hf_model, prompts, seq  # noqa: E402


def async_engine(hf, **cfg) -> LLMEngine:
    engine = LLMEngine(hf, ServingConfig(**cfg))
    assert not engine.async_scheduling  # off on a CPU by default
    engine.async_scheduling = True  # the CUDA path, run on the CPU
    return engine


@pytest.mark.parametrize("scenario", ["paged", "preempt", "reserve", "chunked"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_async_scheduling_gives_transformers_tokens(family, scenario):
    name = FAMILIES[family]
    model = hf_model(name)
    engine = async_engine(model, **dict(model=name, max_batch_size=8, attention_backend="batched") | SCENARIOS[scenario])
    ps, news = prompts([5, 9, 3, 12, 7]), [10, 6, 12, 5, 8]
    seqs = [seq(i, p, n) for i, (p, n) in enumerate(zip(ps, news))]
    joins, step, ended = {0: seqs[:2], 2: seqs[2:3], 4: seqs[3:]}, 0, []
    while engine.has_work() or step <= max(joins):
        for s in joins.get(step, []):
            assert engine.add(s, 0)
        ended += engine.step()
        step += 1
    assert sorted(s.id for s in ended) == list(range(5))  # each returned exactly once
    for s, p, n in zip(seqs, ps, news):
        assert s.status is Status.FINISHED and s.output_ids == hf_greedy(model, p, n), f"request {s.id}"
        assert len(s.token_ns) == n and PENDING not in s.token_ids
    assert (sum(s.num_preemptions for s in seqs) > 0) == (scenario == "preempt")
    assert engine.block_manager.num_free == engine.block_manager.num_blocks and engine.in_flight is None


def test_async_sliding_window():
    model = hf_model("mistral-7b", sliding_window=6)
    ps = prompts([15, 4, 22], seed=1)
    engine = async_engine(model, model="mistral-7b", num_blocks=64, block_size=4, max_batch_size=8,
                          chunked_prefill=True, max_tokens_per_iteration=8)
    seqs = [seq(i, p, 12) for i, p in enumerate(ps)]
    for s in seqs:
        engine.add(s, 0)
    while engine.has_work():
        engine.step()
    assert [s.output_ids for s in seqs] == [hf_greedy(model, p, 12) for p in ps]
    assert engine.block_manager.num_free == 64


def test_one_read_per_iteration_after_the_next_launch(monkeypatch):
    """The order the GPU overlap needs: launch N+1, then read N (one event wait), never before."""
    model = hf_model("llama-3.2-1b")
    engine = async_engine(model, num_blocks=32, block_size=4)
    log: list[str] = []
    launch, read = engine.runner.launch, InFlight.tokens
    flights: list[InFlight] = []  # kept alive: each launch's number is its index

    def logged_launch(p):
        flights.append(launch(p))
        log.append(f"launch {len(flights) - 1}")
        return flights[-1]

    def logged_read(self):
        log.append(f"read {next(i for i, f in enumerate(flights) if f is self)}")
        return read(self)

    monkeypatch.setattr(engine.runner, "launch", logged_launch)
    monkeypatch.setattr(InFlight, "tokens", logged_read)
    a, b = seq(0, prompts([6])[0], 3), seq(1, prompts([5], seed=2)[0], 5)
    engine.add(a, 0)
    engine.add(b, 0)
    steps = []
    while engine.has_work():
        before = len(log)
        engine.step()
        steps.append(log[before:])
    # prefill (launch 0), then each step launches k and reads k-1; the last step only reads
    assert steps[0] == ["launch 0"]
    assert steps[1:-1] == [[f"launch {k}", f"read {k - 1}"] for k in range(1, len(steps) - 1)]
    assert steps[-1] == [f"read {len(steps) - 2}"]
    assert a.output_ids == hf_greedy(model, a.prompt, 3) and b.output_ids == hf_greedy(model, b.prompt, 5)


def test_an_eos_read_late_drops_the_look_ahead_token():
    model = hf_model("llama-3.2-1b")
    p = prompts([9], seed=3)[0]
    greedy = hf_greedy(model, p, 8)
    k = next(i for i in range(1, 8) if greedy[i] not in greedy[:i])
    model.config.eos_token_id = [1, greedy[k], 2]
    try:
        engine = async_engine(model, num_blocks=32, block_size=4, ignore_eos=False)
        stopped = Sequence(0, p, engine.params(8), 0, engine.eos_ids)
        ignored = Sequence(1, p, SamplingParams(8, ignore_eos=True), 0, engine.eos_ids)
        for s in (stopped, ignored):
            engine.add(s, 0)
        ended = []
        while engine.has_work():
            ended += engine.step()
    finally:
        model.config.eos_token_id = 2
    assert stopped.output_ids == greedy[:k + 1] and len(stopped.token_ns) == k + 1
    assert ignored.output_ids == greedy and ended == [stopped, ignored]
    assert engine.block_manager.num_free == 32


def test_commit_of_a_request_preempted_meanwhile():
    """The schedule made while its token was in flight preempted it; the token, an EOS, ends it."""
    bm = BlockManager(num_blocks=8, block_size=4)
    sched = Scheduler(bm, max_batch_size=4, max_tokens_per_iteration=64)
    s = Sequence(0, [5] * 4, SamplingParams(20), eos_ids=frozenset({9}))
    sched.add(s, 0)
    batch = sched.schedule(0)
    sched.advance(batch, [s])
    assert s.token_ids[-1] == PENDING and s.out_row == 0
    sched._preempt(sched.running.pop())
    assert list(sched.waiting) == [s]
    assert sched.commit([s], [9], 7) == [s]
    assert s.status is Status.FINISHED and s.output_ids == [9] and s.token_ns == [7]
    assert not sched.waiting and bm.num_free == 8


def test_the_last_token_by_length_leaves_the_schedule_before_it_is_read():
    bm = BlockManager(num_blocks=8, block_size=4)
    sched = Scheduler(bm, max_batch_size=4, max_tokens_per_iteration=64)
    one, two = Sequence(0, [5] * 3, SamplingParams(1)), Sequence(1, [6] * 3, SamplingParams(2))
    for s in (one, two):
        sched.add(s, 0)
    batch = sched.schedule(0)
    sched.advance(batch, batch.seqs)
    assert sched.running == [two]  # `one` holds its last token: never scheduled again
    nxt = sched.schedule(0)
    assert nxt.seqs == [two] and nxt.num_new == [1]
    assert sched.commit([one, two], [11, 12], 1) == [one] and bm.num_free == 7
    sched.advance(nxt, [two])
    assert sched.commit([two], [13], 2) == [two] and two.output_ids == [12, 13] and bm.num_free == 8


def test_async_scheduling_is_off_on_cpu_and_for_the_request_engine():
    model = hf_model("llama-3.2-1b")
    for engine_kind in ("iteration", "request"):
        assert not LLMEngine(model, ServingConfig(engine=engine_kind, num_blocks=8)).async_scheduling
    assert "async_scheduling" in ServingConfig.model_fields
    assert not torch.cuda.is_available() or LLMEngine(
        model.to("cuda"), ServingConfig(num_blocks=8)).async_scheduling
