"""The zoo has the study's real shapes, and every family runs at tiny size."""
from __future__ import annotations

import json

import pytest
import torch

from tenancy.harness.scenario import Tenant
from tenancy.harness.tasks import Forward, Generate, build_task
from tenancy.harness.timer import CpuTimer
from tenancy.models import param_cache, zoo

# parameter counts from REFERENCE.md (built on the meta device)
REFERENCE_PARAMS_M = {"bert-base": 109.5, "deberta-v3-base": 183.8, "distilgpt2": 81.9,
                      "llama-3.2-1b": 1235.8, "mistral-7b": 7241.7}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Every count here is made afresh, in a cache of the test's own (the user's is left alone)."""
    monkeypatch.setenv(param_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / param_cache.FILE


def _meta_count(name: str, size: str) -> int:
    with torch.device("meta"):
        model = zoo._auto_class(zoo.get(name).kind).from_config(zoo.get(name).make_config(size))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(zoo.ZOO))
def test_full_size_parameter_counts_match_reference(name):
    assert round(zoo.count_params(name) / 1e6, 1) == REFERENCE_PARAMS_M[name]


def test_a_count_is_made_once_then_read_from_the_cache(own_cache, monkeypatch):
    n = zoo.count_params("distilgpt2", "tiny")
    assert n == _meta_count("distilgpt2", "tiny") and list(json.loads(own_cache.read_text()).values()) == [n]
    monkeypatch.setattr(zoo, "_auto_class", lambda kind: pytest.fail("counted again"))
    assert zoo.count_params("distilgpt2", "tiny") == n
    monkeypatch.undo()
    monkeypatch.setenv(param_cache.CACHE_ENV, str(own_cache.parent))
    assert zoo.count_params("distilgpt2") != n  # another config, another entry
    assert len(json.loads(own_cache.read_text())) == 2


def test_the_key_changes_with_any_field_of_the_config():
    config = zoo.get("llama-3.2-1b").make_config("tiny")
    before = param_cache.key("AutoModelForCausalLM", config)
    config.tie_word_embeddings = not config.tie_word_embeddings
    assert param_cache.key("AutoModelForCausalLM", config) != before
    assert param_cache.key("AutoModel", config) != param_cache.key("AutoModelForCausalLM", config)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", "BAD-VALUE"])
def test_a_corrupt_cache_means_counting_again(own_cache, content):
    own_cache.parent.mkdir()
    key = param_cache.key("AutoModel", zoo.get("bert-base").make_config("tiny"))
    own_cache.write_text(json.dumps({key: "12"}) if content == "BAD-VALUE" else content)
    n = zoo.count_params("bert-base", "tiny")
    assert n == _meta_count("bert-base", "tiny") and json.loads(own_cache.read_text()) == {key: n}


def test_a_config_that_is_not_json_is_counted_and_not_cached(own_cache, monkeypatch):
    from transformers import BertConfig

    def unwritable(self, use_diff=True):
        raise TypeError("Object of type Tokenizer is not JSON serializable")

    monkeypatch.setattr(BertConfig, "to_json_string", unwritable)
    assert zoo.count_params("bert-base", "tiny") == _meta_count("bert-base", "tiny")
    assert not own_cache.exists()


def test_an_unwritable_cache_still_gives_the_count(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(param_cache.CACHE_ENV, str(tmp_path / "a-file" / "cache"))  # mkdir fails
    assert zoo.count_params("bert-base", "tiny") == _meta_count("bert-base", "tiny")
    assert list(tmp_path.iterdir()) == [tmp_path / "a-file"]


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
