"""Paged attention: one interface, three backends (`attention_backend`).

Every backend gets, once per iteration, the iteration's spans (per request: where its new
queries start in the flat batch, how many there are, its context length after them, its block
table) and the pool slot of every new token; `plan()` turns them into whatever the kernel needs,
and each layer then calls the backend with q/k/v of the new tokens and its KV pool:

- `reference`: one SDPA call per request (4-D inputs, so fused CPU/GPU kernels apply); the
  oracle the other backends are tested against.
- `batched` (models/batched.py): one call per layer for all decode rows and one for all prefill
  rows, padded, with a mask (the CPU default, and the GPU fallback).
- `flashinfer` (models/flashinfer.py): FlashInfer's paged kernels straight on the pool.

The pool is [blocks, block_size, kv_heads, head_dim] per layer for K and for V (FlashInfer's NHD
layout); what every backend shares with this one is in models/paged_kv.py.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from tenancy.serving.models.paged_kv import Backend, Spans, live, store_kv, window_mask

BACKENDS = ("reference", "batched", "flashinfer")


class ReferenceAttention:
    """Today's per-request loop, kept as the oracle: gather each context, one SDPA per request."""

    name = "reference"

    def __init__(self, block_size: int, window: Optional[int], h2d) -> None:
        self.block_size, self.window, self.h2d = block_size, window, h2d

    def plan(self, spans: Spans, slot_mapping: torch.Tensor) -> None:
        bs, slots, self.spans = self.block_size, [], []
        for q0, n, ctx, blocks in zip(*spans):
            first = live(blocks)
            kv0 = len(slots)
            for b in blocks[first:-(-ctx // bs)]:
                slots.extend(range(b * bs, b * bs + bs))
            self.spans.append((q0, n, ctx, kv0 - first * bs, first * bs))  # base: index of position 0
        self.slot_mapping = slot_mapping
        self.kv_slots = self.h2d(torch.tensor(slots, dtype=torch.long))

    def __call__(self, q, k, v, k_cache, v_cache, scale):
        store_kv(k, v, k_cache, v_cache, self.slot_mapping)
        kvh, d = k.shape[1], k.shape[2]
        keys = k_cache.view(-1, kvh, d).index_select(0, self.kv_slots).transpose(0, 1)  # [KVH, S, D]
        values = v_cache.view(-1, kvh, d).index_select(0, self.kv_slots).transpose(0, 1)
        queries = q.transpose(0, 1)  # [H, T, D]
        out = torch.empty_like(queries)
        gqa, window = q.shape[1] != kvh, self.window
        for q0, n, ctx, base, held in self.spans:
            lo = held if window is None else max(held, ctx - n - window + 1)  # oldest key any query sees
            qi = queries[None, :, q0:q0 + n]
            ki, vi = keys[None, :, base + lo:base + ctx], values[None, :, base + lo:base + ctx]
            if n == 1:
                o = F.scaled_dot_product_attention(qi, ki, vi, scale=scale, enable_gqa=gqa)
            elif lo == 0 and n == ctx and (window is None or ctx <= window):
                o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale, enable_gqa=gqa)
            else:  # a chunk after cached tokens, or a window: explicit mask
                q_pos = torch.arange(ctx - n, ctx, device=q.device)[:, None]
                mask = window_mask(q_pos, torch.arange(lo, ctx, device=q.device)[None, :], window)
                o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale, enable_gqa=gqa)
            out[:, q0:q0 + n] = o[0]
        return out.transpose(0, 1)


def make_backend(name: str, device: torch.device, block_size: int, window: Optional[int], h2d,
                 model=None) -> Backend:
    """`auto`: flashinfer on CUDA when the package imports, else batched (see `resolve`)."""
    if name == "reference":
        return ReferenceAttention(block_size, window, h2d)
    if name == "batched":
        from tenancy.serving.models.batched import BatchedAttention

        return BatchedAttention(block_size, window, h2d, next(model.parameters()).dtype)
    if name == "flashinfer":
        from tenancy.serving.models.flashinfer import FlashInferAttention

        return FlashInferAttention(block_size, window, device, model)
    raise ValueError(f"unknown attention_backend {name!r}; have {BACKENDS}")


def resolve(name: str, device: torch.device) -> tuple[str, Optional[str]]:
    """The backend to use and, when `auto` had to fall back, why (it goes in the manifest)."""
    if name != "auto":
        if name == "flashinfer" and device.type != "cuda":
            raise ValueError("attention_backend flashinfer needs a CUDA device")
        return name, None
    if device.type != "cuda":
        return "batched", None
    try:
        import flashinfer  # noqa: F401
    except ImportError as e:
        return "batched", f"flashinfer unavailable ({e}); install tenancy[flashinfer]"
    return "flashinfer", None
