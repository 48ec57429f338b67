"""Our compact decoders, loaded from a transformers model's weights (random or pretrained).

`from_hf` builds the module skeleton on the meta device and adopts the transformers tensors
(`load_state_dict(assign=True)`): no copy, so a 7B model is not held twice.
"""
from __future__ import annotations

import torch
from torch import nn

from tenancy.serving.models.gpt2 import GPT2LM
from tenancy.serving.models.llama import LlamaLM

FAMILIES: dict[str, type[nn.Module]] = {
    "llama": LlamaLM, "mistral": LlamaLM, "qwen2": LlamaLM, "qwen3": LlamaLM, "gpt2": GPT2LM}  # config.SERVED_FAMILIES


def from_hf(hf_model: nn.Module) -> nn.Module:
    config = hf_model.config
    cls = FAMILIES.get(config.model_type)
    if cls is None:
        raise NotImplementedError(f"no serving model for {config.model_type!r}; have {sorted(FAMILIES)}")
    with torch.device("meta"):
        model = cls(config)
    state = {k: v for k, v in hf_model.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    tied = getattr(config, "tie_word_embeddings", False)
    if tied:
        state.pop("lm_head.weight", None)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"weights do not match {cls.__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie()
    device = next(hf_model.parameters()).device
    model.inv_freq = getattr(model, "inv_freq", torch.empty(0)).to(device)
    return model.eval()


def max_model_len(config) -> int | None:
    """Longest sequence the positions support (learned positions are a hard limit)."""
    if config.model_type == "gpt2":
        return config.n_positions
    return getattr(config, "max_position_embeddings", None)
