"""The GPU paths of the serving engine: FlashInfer attention, CUDA-graph decode, pinned staging,
async scheduling (on by default on CUDA: every variant but the -sync one and the oracle).
Each must give the tokens of the reference backend on the same GPU (and of transformers)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import LLMEngine

sys.path.insert(0, str(Path(__file__).parent))
from test_serving_engine import FAMILIES, hf_model, prompts, seq  # noqa: E402

pytestmark = pytest.mark.gpu

VARIANTS = {  # name: config overrides on CUDA
    "batched-graphs-pinned": dict(attention_backend="batched", cuda_graphs=True, pinned_staging=True),
    "batched-graphs-sync": dict(attention_backend="batched", cuda_graphs=True, async_scheduling=False),
    "batched-eager-pageable": dict(attention_backend="batched", cuda_graphs=False, pinned_staging=False),
    "flashinfer": dict(attention_backend="flashinfer", cuda_graphs=False),
}


def tokens(model, name: str, overrides: dict, scenario: dict) -> list[list[int]]:
    engine = LLMEngine(model, ServingConfig(model=name, max_batch_size=8, **scenario, **overrides), max_seq_len=32)
    ps, news = prompts([5, 9, 3, 12, 7]), [10, 6, 12, 5, 8]
    seqs = [seq(i, p, n) for i, (p, n) in enumerate(zip(ps, news))]
    joins, step = {0: seqs[:2], 2: seqs[2:3], 4: seqs[3:]}, 0
    while engine.has_work() or step <= max(joins):
        for s in joins.get(step, []):
            assert engine.add(s, 0)
        engine.step()
        step += 1
    return [s.output_ids for s in seqs]


@pytest.mark.parametrize("scenario", [dict(num_blocks=64, block_size=16), dict(num_blocks=6, block_size=4)],
                         ids=["paged", "preempt"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_gpu_paths_match_reference(family, variant, scenario):
    if variant == "flashinfer":
        pytest.importorskip("flashinfer")
    name = FAMILIES[family]
    model = hf_model(name).to("cuda")
    try:
        ref = tokens(model, name, dict(attention_backend="reference", cuda_graphs=False, async_scheduling=False),
                     scenario)
        assert tokens(model, name, VARIANTS[variant], scenario) == ref
    finally:
        model.to("cpu")


def test_graphs_are_captured_and_replayed():
    model = hf_model("llama-3.2-1b").to("cuda")
    try:
        engine = LLMEngine(model, ServingConfig(attention_backend="batched", max_batch_size=8, num_blocks=32),
                           max_seq_len=32)
        graphs = engine.runner.graphs
        assert graphs is not None and sorted(graphs.graphs) == [1, 2, 4, 8]
        replays = []
        real = graphs.replay
        graphs.replay = lambda p, attn: replays.append(len(p.input_ids)) or real(p, attn)
        for i in range(3):
            engine.add(seq(i, prompts([5], seed=i)[0], 4), 0)
        while engine.has_work():
            engine.step()
        assert replays and set(replays) <= {3, 2, 1}
    finally:
        model.to("cpu")
