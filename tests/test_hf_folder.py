"""Random-weight model folders: what transformers (and real engines such as vLLM) load from them."""
from __future__ import annotations

import pytest

from tenancy.models.hf_folder import TINY_LLAMA, build_folder, read_config


def test_a_tiny_llama_folder_loads_and_its_tokenizer_decodes_every_id(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_folder(tmp_path / "llama", TINY_LLAMA)
    assert read_config(path)["model_type"] == "llama"
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM"
    tok = AutoTokenizer.from_pretrained(path)
    assert len(tok) == TINY_LLAMA["vocab_size"]
    text = "Hello, world: é ü 北"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # a random model emits any id of its vocabulary: each must decode to something
    assert all(tok.convert_ids_to_tokens(i) is not None for i in range(TINY_LLAMA["vocab_size"]))


def test_an_encoder_folder_is_saved_without_an_lm_head(tmp_path):
    from transformers import AutoModel

    cfg = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=128, vocab_size=512)
    path = build_folder(tmp_path / "bert", cfg, causal=False, tokenizer=False)
    assert type(AutoModel.from_pretrained(path)).__name__ == "BertModel"
    assert not (path / "tokenizer.json").exists()


def test_a_vocabulary_too_small_for_the_bytes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="byte tokenizer needs"):
        build_folder(tmp_path / "small", dict(TINY_LLAMA, vocab_size=100))
