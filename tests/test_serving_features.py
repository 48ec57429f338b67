"""Per-request sampling, EOS ids, refused configs, preemption order, the token budget rule, the
KV budget (item 12 of issue 9), FlashInfer's plan inputs and --save-tokens; all on CPU."""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from pydantic import ValidationError

from tenancy.serving import memory
from tenancy.serving.block_manager import BlockManager
from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import LLMEngine
from tenancy.serving.models import from_hf
from tenancy.serving.models.flashinfer import plan_inputs
from tenancy.serving.models.paged_kv import Spans
from tenancy.serving.sampler import Sampler
from tenancy.serving.scheduler import Scheduler
from tenancy.serving.sequence import FREED, SamplingParams, Sequence, Status

sys.path.insert(0, str(Path(__file__).parent))
from helpers import run_cli  # noqa: E402
from test_serving_engine import hf_greedy, hf_model, prompts, seq  # noqa: E402


def run(engine, seqs) -> None:
    for s in seqs:
        assert engine.add(s, 0)
    while engine.has_work():
        engine.step()


def test_a_request_samples_the_same_tokens_whoever_its_neighbours():
    model = hf_model("llama-3.2-1b")
    p = prompts([6])[0]
    outs = []
    for neighbours in ([], [seq(1, prompts([9], seed=4)[0], 12, temperature=0.7, top_k=5), seq(2, p, 5)]):
        engine = LLMEngine(model, ServingConfig(num_blocks=32, block_size=4))
        me = seq(0, p, 12, temperature=1.0, top_p=0.9, top_k=50, seed=123)
        run(engine, [me] + neighbours)
        outs.append(me.output_ids)
    assert outs[0] == outs[1] and outs[0] != hf_greedy(model, p, 12)
    engine = LLMEngine(model, ServingConfig(num_blocks=32, block_size=4))
    top1 = seq(0, p, 12, temperature=2.0, top_k=1, seed=5)
    run(engine, [top1])
    assert top1.output_ids == hf_greedy(model, p, 12)  # top_k 1 is greedy whatever the temperature


def test_sampler_rows_depend_on_their_own_generator_only():
    logits = torch.randn(3, 50)
    def draw(rows):
        sampler = Sampler(torch.device("cpu"), seed=0)
        seqs = [Sequence(i, [1], SamplingParams(4, temperature=1.0, seed=i)) for i in rows]
        return [sampler(logits[rows], seqs).tolist() for _ in range(5)]
    alone = [[r[0]] for r in draw([2])]
    together = [[r[2]] for r in draw([0, 1, 2])]
    assert alone == together


def test_every_eos_id_ends_a_request_unless_ignored():
    model = hf_model("llama-3.2-1b")
    p = prompts([9], seed=3)[0]
    greedy = hf_greedy(model, p, 8)
    k = next(i for i in range(1, 8) if greedy[i] not in greedy[:i])  # a token seen first at k
    stop = greedy[k]
    model.config.eos_token_id = [1, stop, 2]  # the stop token is the second of three ids
    try:
        engine = LLMEngine(model, ServingConfig(num_blocks=32, block_size=4, ignore_eos=False))
        stopped = Sequence(0, p, engine.params(8), 0, engine.eos_ids)
        ignored = Sequence(1, p, SamplingParams(8, ignore_eos=True), 0, engine.eos_ids)
        run(engine, [stopped, ignored])
    finally:
        model.config.eos_token_id = 2
    assert stopped.output_ids == greedy[:k + 1] and stopped.status is Status.FINISHED
    assert ignored.output_ids == greedy


def test_other_gpt2_activations_are_honoured_and_unknown_ones_refused():
    relu = hf_model("distilgpt2", activation_function="relu")
    engine = LLMEngine(relu, ServingConfig(model="distilgpt2", num_blocks=32, block_size=4))
    s = seq(0, prompts([7])[0], 6)
    run(engine, [s])
    assert s.output_ids == hf_greedy(relu, s.prompt, 6)
    for name, overrides in (("distilgpt2", {"activation_function": "quick_gelu"}),
                            ("llama-3.2-1b", {"hidden_act": "gelu_fast"}),
                            ("distilgpt2", {"scale_attn_by_inverse_layer_idx": True})):
        with pytest.raises(NotImplementedError):
            from_hf(hf_model(name, **overrides))


def test_a_readmitted_request_keeps_its_seniority():
    bm = BlockManager(num_blocks=6, block_size=4)
    sched = Scheduler(bm, max_batch_size=4, max_tokens_per_iteration=64)
    old, mid, new = (Sequence(i, [5] * 4, SamplingParams(20)) for i in range(3))
    for s in (old, mid, new):
        sched.add(s, 0)
    batch = sched.schedule(0)  # 3 prompts of 4 tokens: 3 blocks
    sched.postprocess(batch, [7, 7, 7], 0)
    sched._preempt(sched.running.pop(1))  # mid is preempted (as if it had been the victim)
    sched.schedule(0)  # old and new decode; mid is readmitted behind old, before new
    assert [s.id for s in sched.running] == [0, 1, 2]
    assert sched.running[-1] is new  # so the next victim is the newest, not the readmitted one


def test_token_budget_must_cover_the_batch_cap():
    with pytest.raises(ValidationError, match="must cover"):
        ServingConfig(max_batch_size=64, max_tokens_per_iteration=32)


def test_kv_pool_is_sized_from_the_tenants_budget_not_free_memory():
    gib = 2**30
    assert memory.parse_mem_limit("2G") == 2 * gib and memory.parse_mem_limit("512M") == 512 * 2**20
    assert memory.parse_mem_limit(None) is None
    with pytest.raises(ValueError):
        memory.parse_mem_limit("2 GB")
    # explicit size wins; then the MPS limit; then the device's total, never its free memory
    assert memory.kv_budget_bytes(80 * gib, gib, 0.5, kv_cache_gb=3) == 3 * gib
    assert memory.kv_budget_bytes(80 * gib, gib, 0.5, mem_limit_bytes=5 * gib) == 2 * gib
    assert memory.kv_budget_bytes(80 * gib, 2 * gib, 0.5) == 39 * gib
    assert memory.num_blocks_for(10 * 2**20, 2**20, cap=4) == 4
    with pytest.raises(ValueError, match="holds no"):
        memory.num_blocks_for(100, 2**20, None)
    model = hf_model("llama-3.2-1b")
    engine = LLMEngine(model, ServingConfig(kv_memory_fraction=1.0), mem_limit_bytes=2 * 2**20)
    weights = sum(p.numel() * p.element_size() for p in engine.runner.model.parameters())
    assert engine.runner.num_blocks == (2 * 2**20 - weights) // engine.runner.bytes_per_block


def test_flashinfer_plan_inputs():
    bs = 4
    spans = Spans(q_start=[0, 1, 6], n=[1, 5, 1], ctx=[9, 5, 14],
                  blocks=[[3, 7, 1], [2, 5], [FREED, FREED, 8, 9]])
    p = plan_inputs(spans, bs)
    assert p.qo_indptr.tolist() == [0, 1, 6, 7]
    assert p.kv_indptr.tolist() == [0, 3, 5, 7]
    assert p.kv_indices.tolist() == [3, 7, 1, 2, 5, 8, 9]  # freed pages left out
    assert p.last_page_len.tolist() == [1, 1, 2]
    assert p.qo_indptr.dtype == p.kv_indices.dtype == torch.int32 and not p.decode_only
    assert plan_inputs(Spans([0], [1], [16], [[4, 5, 6, 7]]), bs).last_page_len.tolist() == [4]


def test_save_tokens_writes_output_token_ids(tmp_path):
    out = tmp_path / "run"
    code, err = run_cli("serve", "--model", "distilgpt2", "--size", "tiny", "--device", "cpu",
                        "--num-requests", "3", "--rate", "500", "--input-len", "4-8", "--output-len", "3",
                        "--max-batch-size", "4", "--save-tokens", "--out", out)
    assert code == 0, err
    df = pd.read_parquet(out / "requests.parquet")
    assert df["output_token_ids"].map(len).eq(3).all()
