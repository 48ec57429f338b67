"""The roofline's FLOP and byte formulas: hand-computed cases, FlopCounterMode on tiny models,
the floor and the summary columns."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from tenancy.analysis import floors, roofline
from tenancy.harness.tasks import cache_name_of
from tenancy.models import zoo


def test_bert_base_forward_by_hand():
    # 12 layers of 4 d^2 (Q, K, V, O) + 2 d f (MLP) weights, d=768, f=3072
    m = roofline.dims("bert-base")
    layer = 4 * 768 * 768 + 2 * 768 * 3072
    assert m.layer_params == layer == 7_077_888
    b, s = 8, 128
    linear = 2 * b * s * 12 * layer  # 2 FLOPs per multiply-add per token
    attention = 12 * 4 * b * s * s * 768  # QK^T and AV: 2 b s s d each
    pooler = 2 * b * 768 * 768
    cost = roofline.forward(m, b, s, 2)
    assert cost.flops == linear + attention + pooler
    assert cost.bytes == 2 * (12 * layer + 768 * 768)  # every matmul weight once, fp16
    assert cost.intensity == pytest.approx(cost.flops / cost.bytes)


def test_llama_decode_step_by_hand():
    # GQA: Q and O are d x (32*64), K and V are d x (8*64); SwiGLU: three d x f matrices
    m = roofline.dims("llama-3.2-1b")
    d, f, v, L = 2048, 8192, 128256, 16
    layer = 2 * d * 2048 + 2 * d * 512 + 3 * d * f
    assert m.layer_params == layer
    b, ctx = 8, 160
    c = roofline.decode(m, b, ctx, 2)
    assert c.flops == L * (2 * b * layer + 4 * b * 32 * 64 * ctx) + 2 * b * d * v
    kv = b * ctx * 2 * L * 8 * 64  # K and V of every layer, 8 KV heads of 64
    assert c.bytes == 2 * (L * layer + d * v + kv)
    # decoding at batch 8 in fp16 is memory-bound: intensity about the batch size
    assert 4 < c.intensity < 16


def test_generate_is_prefill_then_growing_decode_steps():
    m = roofline.dims("distilgpt2", "tiny")
    steps = roofline.generate(m, 2, 16, 4, 4)
    assert len(steps) == 4  # prefill gives the first token, 3 decode steps the rest
    assert steps[0] == roofline.prefill(m, 2, 16, 4)
    assert [s.flops for s in steps[1:]] == sorted(s.flops for s in steps[1:])  # the context grows
    assert steps[1] == roofline.decode(m, 2, 17, 4)


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_resident_weights_match_the_built_model(name):
    # norms and biases are left out: within 0.5% of the parameter count of the real config
    assert roofline.weight_params(roofline.dims(name)) == pytest.approx(zoo.count_params(name), rel=0.005)


def _counted(model, **kwargs) -> tuple[int, object]:
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        out = model(**kwargs)
    return fc.get_total_flops(), out


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_flops_equal_the_profiler_on_tiny_models(name):
    """Eager attention (SDPA's CPU kernel has no FLOP formula): every matmul is counted."""
    spec = zoo.get(name)
    cls = transformers.AutoModelForCausalLM if spec.kind == "decoder" else transformers.AutoModel
    torch.manual_seed(0)
    model = cls.from_config(spec.make_config("tiny"), attn_implementation="eager").eval()
    m, b, s = roofline.dims(name, "tiny"), 2, 16
    ids = zoo.random_input_ids(m.vocab, b, s)
    if spec.kind == "encoder":
        counted, _ = _counted(model, input_ids=ids)
        assert counted == roofline.forward(m, b, s, 4).flops
        return
    counted, out = _counted(model, input_ids=ids, use_cache=True, logits_to_keep=1)
    assert counted == roofline.prefill(m, b, s, 4).flops
    name = cache_name_of(model)
    cache = getattr(out, name)
    for i in range(1, 3):  # two decode steps, the context growing
        counted, out = _counted(model, input_ids=ids[:, :1], use_cache=True, **{name: cache})
        cache = getattr(out, name)
        assert counted == roofline.decode(m, b, s + i, 4).flops


def test_serve_iteration_matches_its_parts():
    # one prompt alone is a prefill whose LM head runs once; one decode alone is a decode step
    m = roofline.dims("llama-3.2-1b", "tiny")
    assert roofline.serve_iteration(m, [20], [], 4) == roofline.prefill(m, 1, 20, 4)
    assert roofline.serve_iteration(m, [], [33], 4) == roofline.decode(m, 1, 33, 4)
    both = roofline.serve_iteration(m, [20], [33], 4)
    weights = roofline.matmul_weights(m) * 4  # read once for the whole iteration
    assert both.bytes == roofline.prefill(m, 1, 20, 4).bytes + roofline.decode(m, 1, 33, 4).bytes - weights
    assert both.flops == roofline.prefill(m, 1, 20, 4).flops + roofline.decode(m, 1, 33, 4).flops


def test_floor_sums_each_call_on_its_own_bound():
    costs = [roofline.Cost(flops=1e12, bytes=1e9), roofline.Cost(flops=1e9, bytes=1e9)]
    f = roofline.floor(costs, flops_per_s=1e12, bytes_per_s=1e10)
    # first call: compute 1 s vs memory 0.1 s; second: compute 1 ms vs memory 0.1 s
    assert f.floor_s == pytest.approx(1.0 + 0.1)
    assert f.bound == "compute"
    assert f.flops == 1e12 + 1e9 and f.bytes == 2e9


def test_summary_columns_and_the_below_floor_warning():
    work = {"model": "bert-base", "size": "full", "task": "forward", "batch": 8, "seq": 128, "new_tokens": 32,
            "dtype": "float16"}
    peak = {"flops_per_s": 100e12, "bytes_per_s": 1e12}
    cost = roofline.forward(roofline.dims("bert-base"), 8, 128, 2)
    expected_ms = max(cost.flops / 100e12, cost.bytes / 1e12) * 1000
    v = floors.row_values(work, 2 * expected_ms, peak)
    assert v["floor_ms"] == pytest.approx(expected_ms) and v["bound"] == "compute"
    assert v["mfu"] == pytest.approx(0.5)  # twice the floor, compute-bound: half the peak FLOP/s
    assert v["mbu"] == pytest.approx(cost.bytes / (2 * expected_ms / 1000) / 1e12)
    summary = pd.DataFrame([{"phase": "solo", "tenant": "bert", "copy": 0, "mean_ms": 0.5 * expected_ms, **v}])
    (w,) = floors.warnings(summary)
    assert "below its roofline floor" in w and "measurement error" in w
    assert math.isnan(floors.row_values(work, 1.0, None)["floor_ms"])  # no peaks: no floor
    assert floors.peak_for({"error": "no answer"}, "float16") is None
