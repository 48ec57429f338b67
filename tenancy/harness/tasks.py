"""The work a tenant repeats: one forward pass, or prefill plus greedy decode with the KV cache."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import nvtx
import torch

from tenancy.models import zoo


@dataclass
class Forward:
    """One forward pass over batch x seq (the encoders' job)."""

    model: Any
    input_ids: torch.Tensor

    stages = ("forward",)

    @torch.inference_mode()
    def step(self, timer) -> None:
        self.model(input_ids=self.input_ids)


@dataclass
class Generate:
    """Prefill of batch x seq, then greedy decode up to `new_tokens` generated tokens.

    Like `generate(max_new_tokens=...)`, prefill yields the first token and `new_tokens - 1`
    decode steps yield the rest; EOS is ignored so every iteration does the same work.
    """

    model: Any
    input_ids: torch.Tensor
    new_tokens: int
    cache_name: str  # the KV cache's keyword and output field: cache_name_of(model)

    stages = ("prefill", "decode")

    @torch.inference_mode()
    def step(self, timer) -> list[torch.Tensor]:
        """Returns the generated tokens, one [batch, 1] tensor per position."""
        with nvtx.annotate("prefill", color="blue"):
            out = self.model(input_ids=self.input_ids, use_cache=True, logits_to_keep=1)
            tokens = [out.logits[:, -1].argmax(-1, keepdim=True)]
        timer.mark()
        cache = getattr(out, self.cache_name)
        with nvtx.annotate("decode", color="green"):
            for _ in range(self.new_tokens - 1):
                out = self.model(input_ids=tokens[-1], use_cache=True, **{self.cache_name: cache})
                cache = getattr(out, self.cache_name)
                tokens.append(out.logits[:, -1].argmax(-1, keepdim=True))
        return tokens


def cache_name_of(model) -> str:
    """The KV cache's name in the model's forward and output: transformers renamed
    `past_key_values` to `cache` (the old name still works there, with a deprecation warning)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def build_task(tenant, device: str, seed: int):
    """Model and inputs for a tenant (a `scenario.Tenant` with its dtype resolved)."""
    model = zoo.build(tenant.model, tenant.size, tenant.dtype, device, tenant.weights, seed)
    ids = zoo.random_input_ids(model.config.vocab_size, tenant.batch, tenant.seq, seed, device)
    if tenant.task == "generate":
        return Generate(model, ids, tenant.new_tokens, cache_name_of(model))
    return Forward(model, ids)
