"""The zoo has the study's real shapes, and every family runs at tiny size."""
from __future__ import annotations

import pytest
import torch

from tenancy.harness.scenario import Tenant
from tenancy.harness.tasks import Forward, Generate, build_task
from tenancy.harness.timer import CpuTimer
from tenancy.models import zoo

# parameter counts from REFERENCE.md (built on the meta device)
REFERENCE_PARAMS_M = {"bert-base": 109.5, "deberta-v3-base": 183.8, "distilgpt2": 81.9,
                      "llama-3.2-1b": 1235.8, "mistral-7b": 7241.7}


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_full_size_parameter_counts_match_reference(name):
    assert round(zoo.count_params(name) / 1e6, 1) == REFERENCE_PARAMS_M[name]


def test_full_configs_keep_the_details():
    llama = zoo.get("llama-3.2-1b").make_config()
    assert llama.rope_scaling["rope_type"] == "llama3" and llama.num_key_value_heads == 8
    assert zoo.get("mistral-7b").make_config().sliding_window == 4096
    deberta = zoo.get("deberta-v3-base").make_config()
    assert deberta.pos_att_type == ["p2c", "c2p"] and deberta.position_biased_input is False


@pytest.mark.parametrize("size", ["full", "tiny"])
@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_the_vocabulary_size_read_from_the_fields_is_the_configs(name, size):
    assert zoo.get(name).vocab_size(size) == zoo.get(name).make_config(size).vocab_size


def test_unknown_model_lists_the_zoo():
    with pytest.raises(zoo.UnknownModel, match="known: bert-base"):
        zoo.get("bert-large")


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_tiny_models_run_their_task(name):
    tenant = Tenant(name="t", model=name, size="tiny", batch=2, seq=12, new_tokens=4, dtype="float32")
    task = build_task(tenant, "cpu", seed=0)
    assert isinstance(task, Generate if zoo.get(name).kind == "decoder" else Forward)
    assert zoo.count_params(name, "tiny") < 1_000_000
    timer = CpuTimer()
    timer.start()
    task.step(timer)
    stages = timer.stop()
    assert len(stages) == len(task.stages) and all(s > 0 for s in stages)


@pytest.mark.parametrize("name", ["distilgpt2", "llama-3.2-1b", "mistral-7b"])
def test_generate_task_decodes_the_same_tokens_as_transformers(name):
    """The timed loop is real greedy decoding with the KV cache: same tokens as `generate`."""
    tenant = Tenant(name="t", model=name, size="tiny", batch=2, seq=10, new_tokens=6, dtype="float32")
    task = build_task(tenant, "cpu", seed=1)
    expected = task.model.generate(task.input_ids, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    timer = CpuTimer()
    timer.start()
    tokens = task.step(timer)
    assert torch.equal(torch.cat(tokens, 1), expected[:, 10:])


def test_random_inputs_are_seeded_and_never_zero():
    a = zoo.random_input_ids(100, 4, 32, seed=3)
    assert torch.equal(a, zoo.random_input_ids(100, 4, 32, seed=3))
    assert a.min() >= 3 and not torch.equal(a, zoo.random_input_ids(100, 4, 32, seed=4))
