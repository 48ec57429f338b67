"""Random-weight Hugging Face model folders, for tests, benchmarks and real engines such as vLLM.

Weights cannot be downloaded here, so every engine that wants a model folder (ours, vLLM,
transformers) gets one built from a config with `save_pretrained`. The tokenizer is byte-level
with no merges: any text round-trips, and every id of the model's vocabulary decodes (ids past
the 256 bytes and the specials are filler tokens), so a server can detokenize whatever a random
model emits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIALS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2: the bos/eos the zoo's tiny decoders use

# A Llama of hidden 512, 8 layers: big enough that the matmuls dominate, small enough for 2 cores.
SMALL_LLAMA: dict[str, Any] = dict(
    model_type="llama", hidden_size=512, intermediate_size=1408, num_hidden_layers=8,
    num_attention_heads=8, num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
    rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2,
)
# head_dim 64: vLLM's CPU attention has no kernel for the zoo's tiny head_dim of 16.
TINY_LLAMA: dict[str, Any] = dict(
    SMALL_LLAMA, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, head_dim=64, vocab_size=1024,
)


def save_tokenizer(path: str | Path, vocab_size: int) -> None:
    """A byte-level tokenizer of exactly `vocab_size` ids, saved as a fast tokenizer."""
    byte_tokenizer(vocab_size).save_pretrained(str(path))


def byte_tokenizer(vocab_size: int):
    """The byte-level fast tokenizer of exactly `vocab_size` ids (random-weight models' text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_chars = list(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < len(SPECIALS) + len(byte_chars):
        raise ValueError(f"vocab_size {vocab_size} is below the {len(SPECIALS) + len(byte_chars)} a byte tokenizer needs")
    tokens = list(SPECIALS) + sorted(byte_chars)
    tokens += [f"<extra_{i}>" for i in range(vocab_size - len(tokens))]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


def build_folder(path: str | Path, config: dict[str, Any], causal: bool = True, seed: int = 0,
                 tokenizer: bool = True, dtype: str = "float32", weights: bool = True) -> Path:
    """Write config.json, random weights (safetensors) and optionally a tokenizer to `path`.

    `config` is a transformers config as a dict with its `model_type`; `causal` saves a decoder
    with its LM head (AutoModelForCausalLM), else the bare AutoModel (encoders). `weights=False`
    writes the config alone (what a tenant's `weights: random` needs), its architectures named.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    kwargs = dict(config)
    cfg = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    cls = AutoModelForCausalLM if causal else AutoModel
    torch.manual_seed(seed)
    with torch.device("cpu" if weights else "meta"):
        model = cls.from_config(cfg, dtype=getattr(torch, dtype))
    if weights:
        model.save_pretrained(str(path))
    else:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(str(path))
    if tokenizer:
        save_tokenizer(path, int(cfg.vocab_size))
    return path


def read_config(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "config.json").read_text())
