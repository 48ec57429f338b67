"""The engine produces exactly transformers' greedy tokens, whatever the batching and whatever
the attention backend: requests joining mid-flight, preemption + recomputation, both KV
policies, chunked prefill, sliding window, the in-engine request-level baseline. And every
request ends exactly once."""
from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from transformers import AutoModelForCausalLM

from tenancy.models import zoo
from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import LLMEngine, serve
from tenancy.serving.hf_baseline import HFEngine
from tenancy.serving.sequence import SamplingParams, Sequence, Status
from tenancy.serving.workload import RequestSpec

FAMILIES = {"gpt2": "distilgpt2", "llama": "llama-3.2-1b", "mistral": "mistral-7b"}
_QWEN = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             intermediate_size=128, vocab_size=1024, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
FOLDERS = {"qwen2": dict(_QWEN, model_type="qwen2"), "qwen3": dict(_QWEN, model_type="qwen3")}  # model folders
CPU_BACKENDS = ("reference", "batched")  # flashinfer: GPU only (test_serving_gpu.py)


def seq(i: int, prompt: list[int], n: int, **params) -> Sequence:
    return Sequence(i, prompt, SamplingParams(n, **params))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add contention on a shared 2-core box
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def names(tmp_path_factory) -> dict[str, str]:
    """family: the model to name, a zoo model or (Qwen) a random-weight model folder."""
    from tenancy.models.hf_folder import build_folder

    root = tmp_path_factory.mktemp("served")
    return {**FAMILIES, **{f: str(build_folder(root / f, c, tokenizer=False)) for f, c in FOLDERS.items()}}


@lru_cache(maxsize=None)
def hf_model(name: str, **overrides):
    """Tiny model with weights scaled up so greedy decoding is not one token repeated (cached:
    the engine only reads it). A folder model's biases and norms are perturbed too: Qwen2's q/k/v
    biases and Qwen3's per-head q/k norms must be applied to agree."""
    spec = zoo.get(name)
    config = spec.make_config("full" if spec.path else "tiny")
    for k, v in overrides.items():
        setattr(config, k, v)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.15)
            elif spec.path:
                p.add_(torch.randn_like(p) * 0.3)
    return model


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    return list(_hf_greedy(model, tuple(prompt), n))


@lru_cache(maxsize=None)
def _hf_greedy(model, prompt: tuple[int, ...], n: int) -> tuple[int, ...]:
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    return tuple(out[0, len(prompt):].tolist())


def prompts(lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 1024, (n,), generator=g).tolist() for n in lengths]


SCENARIOS = {  # name: config overrides
    "paged": dict(num_blocks=64, block_size=4, kv_policy="paged"),
    "preempt": dict(num_blocks=12, block_size=4, kv_policy="paged"),
    "reserve": dict(num_blocks=14, block_size=4, kv_policy="reserve"),
    "chunked": dict(num_blocks=64, block_size=4, chunked_prefill=True, max_tokens_per_iteration=6,
                    max_batch_size=6),
    "request": dict(num_blocks=64, block_size=4, engine="request", max_batch_size=3),
}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("family", [*FAMILIES, *FOLDERS])
def test_greedy_matches_transformers(family, scenario, backend, names):
    name = names[family]
    model = hf_model(name)
    cfg = dict(model=name, max_batch_size=8, attention_backend=backend) | SCENARIOS[scenario]
    engine = LLMEngine(model, ServingConfig(**cfg))
    ps, news = prompts([5, 9, 3, 12, 7]), [10, 6, 12, 5, 8]
    seqs = [seq(i, p, n) for i, (p, n) in enumerate(zip(ps, news))]
    joins = {0: seqs[:2], 2: seqs[2:3], 4: seqs[3:]}  # requests join mid-flight
    step, max_running = 0, 0
    while engine.has_work() or step <= max(joins):
        for s in joins.get(step, []):
            assert engine.add(s, 0)
        engine.step()
        max_running = max(max_running, len(engine.scheduler.running))
        step += 1
    for s, p, n in zip(seqs, ps, news):
        assert s.status is Status.FINISHED and s.num_output == n
        assert s.output_ids == hf_greedy(model, p, n), f"request {s.id}"
    preemptions = sum(s.num_preemptions for s in seqs)
    if scenario == "preempt":
        assert preemptions > 0  # the pool is too small for all five at once
    else:
        assert preemptions == 0
    if scenario in ("reserve", "request"):
        assert max_running <= 3  # reserve: 14 blocks hold at most 3; request: the batch cap
    assert engine.block_manager.num_free == engine.block_manager.num_blocks  # nothing leaked


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("family", [*FAMILIES, *FOLDERS])
def test_logits_match_transformers(family, backend, names):
    """Stricter than tokens: every prefill position, then a decode step that reads the cache."""
    name = names[family]
    model = hf_model(name)
    engine = LLMEngine(model, ServingConfig(model=name, num_blocks=16, block_size=4, attention_backend=backend))
    prompt = prompts([11], seed=5)[0]
    s = seq(0, prompt, 4)
    engine.add(s, 0)
    runner = engine.runner
    with torch.inference_mode():
        for step in range(2):
            batch = engine.scheduler.schedule(0)
            p = runner.prepare(batch)
            ours = runner.model(p.input_ids, p.positions, runner.kv_caches, runner.attn, torch.arange(len(p.input_ids)))
            ref = model(torch.tensor([s.token_ids])).logits[0, -len(p.input_ids):]
            torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)
            engine.scheduler.postprocess(batch, [int(ours[-1].argmax())], 0)
    assert s.num_computed == 12


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_sliding_window_matches_transformers_and_frees_blocks(backend):
    model = hf_model("mistral-7b", sliding_window=6)
    ps = prompts([15, 4, 22], seed=1)
    for chunked in (False, True):
        engine = LLMEngine(model, ServingConfig(model="mistral-7b", num_blocks=64, block_size=4, max_batch_size=8,
                                                chunked_prefill=chunked, max_tokens_per_iteration=8,
                                                attention_backend=backend))
        seqs = [seq(i, p, 12) for i, p in enumerate(ps)]
        for s in seqs:
            engine.add(s, 0)
        held = 0
        while engine.has_work():
            engine.step()
            held = max(held, max((sum(b >= 0 for b in s.block_table) for s in seqs), default=0))
        assert [s.output_ids for s in seqs] == [hf_greedy(model, p, 12) for p in ps]
        assert held <= 4  # a window of 6 tokens spans at most 3 blocks of 4, +1 being filled
        assert engine.block_manager.num_free == 64


def test_finished_request_returns_at_once():
    model = hf_model("llama-3.2-1b")
    engine = LLMEngine(model, ServingConfig(num_blocks=64, block_size=4))
    long, short = seq(0, prompts([6])[0], 20), seq(1, prompts([6], seed=2)[0], 2)
    engine.add(long, 0)
    engine.add(short, 0)
    assert engine.step() == []  # prefill of both: first tokens
    assert engine.step() == [short]  # second token: short is done while long keeps going
    assert long.status is Status.RUNNING and len(engine.scheduler.running) == 1


def _specs(lengths, outs, arrivals):
    return [RequestSpec(i, a, p, o) for i, (p, o, a) in enumerate(zip(prompts(lengths), outs, arrivals))]


def test_every_request_ends_exactly_once_on_an_oversubscribed_pool():
    model = hf_model("distilgpt2")
    cfg = ServingConfig(model="distilgpt2", num_blocks=10, block_size=4, max_batch_size=4)  # 40 tokens
    engine = LLMEngine(model, cfg)
    lengths = [8, 12, 50, 6, 10, 9, 7, 11]  # the 50-token prompt can never fit in the pool
    specs = _specs(lengths, [8] * len(lengths), [0.0, 0.0, 0.001, 0.002, 0.002, 0.003, 0.01, 0.01])
    seqs, t0 = serve(engine, specs)
    assert sorted(s.id for s in seqs) == list(range(len(specs)))
    failed = [s for s in seqs if s.status is Status.FAILED]
    assert [s.id for s in failed] == [2] and "whole pool" in failed[0].error
    for s in seqs:
        if s.id != 2:
            assert s.status is Status.FINISHED and s.num_output == 8 and len(s.token_ns) == 8
            assert s.arrival_ns <= s.admitted_ns <= s.token_ns[0] <= s.finish_ns
    assert sum(s.num_preemptions for s in seqs) > 0
    assert engine.block_manager.num_free == cfg.num_blocks and not engine.has_work()


def test_serve_empty_and_closed_loop():
    model = hf_model("llama-3.2-1b")
    engine = LLMEngine(model, ServingConfig(num_blocks=32, block_size=4, max_batch_size=8))
    assert serve(engine, [])[0] == []
    specs = _specs([5] * 7, [3] * 7, [None] * 7)
    seqs, _ = serve(engine, specs, concurrency=2)
    assert len(seqs) == 7 and all(s.status is Status.FINISHED for s in seqs)
    # closed loop: never more than 2 in flight, so the 3rd arrives when the first finishes
    by_id = {s.id: s for s in seqs}
    assert by_id[2].arrival_ns >= min(by_id[0].finish_ns, by_id[1].finish_ns)


def test_hf_baseline_matches_transformers_and_batches():
    model = hf_model("llama-3.2-1b")
    engine = HFEngine(model, ServingConfig(max_batch_size=3, engine="hf"))
    ps, outs = prompts([5, 9, 3, 7], seed=3), [4, 7, 2, 3]
    seqs = [seq(i, p, n) for i, (p, n) in enumerate(zip(ps, outs))]
    for s in seqs:
        engine.add(s, 0)
    first = engine.step()
    assert first == seqs[:3] and engine.has_work()  # one padded batch of 3, run to completion
    assert len({s.finish_ns for s in first}) == 1  # all returned together
    engine.step()
    for s, p, n in zip(seqs, ps, outs):
        assert s.output_ids == hf_greedy(model, p, n)


def test_request_level_engine_holds_a_batch_until_its_longest_ends():
    model = hf_model("llama-3.2-1b")
    engine = LLMEngine(model, ServingConfig(engine="request", max_batch_size=3, num_blocks=64, block_size=4))
    ps, outs = prompts([5, 9, 3, 7], seed=3), [4, 7, 2, 3]
    seqs = [seq(i, p, n) for i, (p, n) in enumerate(zip(ps, outs))]
    for s in seqs:
        engine.add(s, 0)
    returned = []
    while engine.has_work():
        returned.append(engine.step())
    assert [len(r) for r in returned if r] == [3, 1]
    first = next(r for r in returned if r)
    assert set(first) == set(seqs[:3]) and len({s.finish_ns for s in first}) == 1
    assert len(returned) == 7 + 3  # batch 1 runs its longest (7 tokens), then batch 2 (3 tokens)
    for s, p, n in zip(seqs, ps, outs):
        assert s.output_ids == hf_greedy(model, p, n) and len(s.token_ns) == n
        assert s.token_ns[-1] <= s.finish_ns
    assert engine.block_manager.num_free == 64
