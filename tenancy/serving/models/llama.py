"""Llama-family decoder (Llama 3.x, Mistral, Qwen2, Qwen3): RMSNorm, RoPE, grouped-query
attention, SwiGLU. Qwen2 adds biases to q/k/v (not o); Qwen3 RMS-normalises each head of q and k
before RoPE (q_norm, k_norm over head_dim).

Parameter names match transformers' Llama/Mistral/Qwen2/Qwen3ForCausalLM, so a state_dict
loads with `assign=True` (the tensors are shared, not copied). RoPE frequencies come from
transformers' own init functions, so the config's scaling (llama3, linear, yarn...) is exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tenancy.serving.models.activations import activation
from tenancy.serving.models.paged_kv import Backend


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as transformers: normalise in float32, cast back, then scale (one fused op, not five)
        return self.weight * F.rms_norm(x.float(), x.shape[-1:], eps=self.eps).to(x.dtype)


def rope_frequencies(config) -> tuple[torch.Tensor, float]:
    """inv_freq [head_dim/2] and the cos/sin scale, from the config's rope parameters."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type in ("dynamic", "longrope"):  # frequencies change with the sequence length
        raise NotImplementedError(f"rope_type {rope_type!r} is not implemented by the serving model")
    with torch.device("cpu"):  # the model skeleton is built on meta; these must be real
        if rope_type != "default":
            return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
        base = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [T, heads, D]; cos/sin [T, 1, D] (rotate-half convention, as transformers)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_heads, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        bias = getattr(config, "attention_bias", False)
        qkv_bias = bias or config.model_type == "qwen2"  # Qwen2 hard-codes q/k/v biases, o has none
        h, d = config.hidden_size, self.head_dim
        self.q_proj = nn.Linear(h, self.n_heads * d, bias=qkv_bias)
        self.k_proj = nn.Linear(h, self.n_kv * d, bias=qkv_bias)
        self.v_proj = nn.Linear(h, self.n_kv * d, bias=qkv_bias)
        self.o_proj = nn.Linear(self.n_heads * d, h, bias=bias)
        self.qk_norm = config.model_type == "qwen3"
        if self.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(d, config.rms_norm_eps), RMSNorm(d, config.rms_norm_eps)

    def forward(self, x, cos, sin, kv: tuple[torch.Tensor, torch.Tensor], attn: Backend):
        t, d = x.shape[0], self.head_dim
        q, k = self.q_proj(x).view(t, self.n_heads, d), self.k_proj(x).view(t, self.n_kv, d)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        v = self.v_proj(x).view(t, self.n_kv, d)
        o = attn(q, k, v, kv[0], kv[1], d ** -0.5)
        return self.o_proj(o.reshape(t, self.n_heads * d))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        h, i, bias = config.hidden_size, config.intermediate_size, getattr(config, "mlp_bias", False)
        self.gate_proj, self.up_proj = nn.Linear(h, i, bias=bias), nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)
        self.act = activation(config.hidden_act)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn, self.mlp = Attention(config), MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, kv, attn):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, kv, attn)
        return x + self.mlp(self.post_attention_layernorm(x))


def sliding_window(config) -> int | None:
    """The window every layer keeps, or None. Qwen's `layer_types` may window only the upper
    layers: one window for all layers is what the KV pool supports, so a mix is refused."""
    types = set(getattr(config, "layer_types", None) or [])
    if "sliding_attention" in types and len(types) > 1:
        raise NotImplementedError("a mix of sliding-window and full-attention layers is not implemented by the "
                                  "serving model")
    if types and "sliding_attention" not in types:
        return None
    return getattr(config, "sliding_window", None)


class LlamaLM(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.model.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))
        self.model.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.sliding_window = sliding_window(config)
        attn = self.model.layers[0].self_attn
        self.kv_shape = (config.num_hidden_layers, attn.n_kv, attn.head_dim)
        self.num_heads, self.attn_scale = attn.n_heads, attn.head_dim ** -0.5
        self.inv_freq, self.rope_scale = rope_frequencies(config)

    def tie(self) -> None:
        if getattr(self.config, "tie_word_embeddings", False):
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids, positions, kv_caches, attn: Backend, logits_idx) -> torch.Tensor:
        x = self.model.embed_tokens(input_ids)
        freqs = positions[:, None].float() * self.inv_freq.to(x.device)[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]  # [T, 1, D]
        cos, sin = (emb.cos() * self.rope_scale).to(x.dtype), (emb.sin() * self.rope_scale).to(x.dtype)
        for layer, kv in zip(self.model.layers, kv_caches):
            x = layer(x, cos, sin, kv, attn)
        x = self.model.norm(x[logits_idx])  # only the rows that sample a token
        return self.lm_head(x)
