"""GPT-2 decoder (distilgpt2): learned positions, LayerNorm, fused QKV, the config's activation.

transformers' GPT-2 stores its projections as Conv1D, weight [in, out] (transposed vs
nn.Linear); we keep that layout and compute x @ W + b with addmm, so the state_dict loads with
`assign=True` and nothing is copied or transposed.
"""
from __future__ import annotations

import torch
from torch import nn

from tenancy.serving.models.activations import activation
from tenancy.serving.models.paged_kv import Backend


class Conv1D(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, x, self.weight)


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads, h = config.n_head, config.n_embd
        self.head_dim = h // self.n_heads
        self.c_attn, self.c_proj = Conv1D(h, 3 * h), Conv1D(h, h)
        self.scale = self.head_dim ** -0.5 if getattr(config, "scale_attn_weights", True) else 1.0

    def forward(self, x, kv, attn: Backend):
        t, h = x.shape
        q, k, v = self.c_attn(x).view(t, 3, self.n_heads, self.head_dim).unbind(1)
        o = attn(q, k, v, kv[0], kv[1], self.scale)
        return self.c_proj(o.reshape(t, h))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc, self.c_proj = Conv1D(config.n_embd, inner), Conv1D(inner, config.n_embd)
        self.act = activation(config.activation_function)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        eps = config.layer_norm_epsilon
        self.ln_1, self.ln_2 = nn.LayerNorm(config.n_embd, eps=eps), nn.LayerNorm(config.n_embd, eps=eps)
        self.attn, self.mlp = Attention(config), MLP(config)

    def forward(self, x, kv, attn):
        x = x + self.attn(self.ln_1(x), kv, attn)
        return x + self.mlp(self.ln_2(x))


class GPT2LM(nn.Module):
    def __init__(self, config):
        super().__init__()
        for variant in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "add_cross_attention"):
            if getattr(config, variant, False):
                raise NotImplementedError(f"GPT-2 variant {variant} is not implemented by the serving model")
        self.config = config
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.transformer.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.transformer.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.transformer.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.sliding_window = None
        self.kv_shape = (config.n_layer, config.n_head, config.n_embd // config.n_head)
        self.num_heads, self.attn_scale = config.n_head, self.transformer.h[0].attn.scale

    def tie(self) -> None:
        if getattr(self.config, "tie_word_embeddings", True):
            self.lm_head.weight = self.transformer.wte.weight

    def forward(self, input_ids, positions, kv_caches, attn: Backend, logits_idx) -> torch.Tensor:
        x = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        for block, kv in zip(self.transformer.h, kv_caches):
            x = block(x, kv, attn)
        return self.lm_head(self.transformer.ln_f(x[logits_idx]))
