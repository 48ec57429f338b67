"""Paged attention over a block pool, one request at a time (Orca's selective batching).

Everything except attention runs on the flattened [total_tokens, hidden] batch. Attention needs
each request's own context, so per layer we (1) scatter the iteration's new K/V into the pool
through `slot_mapping`, (2) gather every request's cached K/V in one `index_select`, (3) run
scaled_dot_product_attention per request on views of that gather, writing into one output.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F


@dataclass
class AttnMeta:
    """Per-iteration attention inputs, built once by the model runner and shared by all layers."""

    slot_mapping: torch.Tensor  # [T] pool slot (block * block_size + offset) of each new token
    kv_slots: torch.Tensor  # [S] pool slots of all requests' contexts, request after request
    # per request: (q_start, q_end, kv_start, ctx_len); queries are positions ctx_len-n .. ctx_len-1
    seqs: list[tuple[int, int, int, int]]
    sliding_window: Optional[int] = None


def _mask(n: int, ctx: int, window: Optional[int], device) -> torch.Tensor:
    """Boolean [n, ctx] mask for n queries at the last n positions of a ctx-long context."""
    q_pos = torch.arange(ctx - n, ctx, device=device)[:, None]
    k_pos = torch.arange(ctx, device=device)[None, :]
    mask = k_pos <= q_pos
    if window is not None:
        mask &= k_pos > q_pos - window  # transformers' sliding window: the last `window` tokens
    return mask


def paged_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                    v_cache: torch.Tensor, meta: AttnMeta, scale: float) -> torch.Tensor:
    """q [T, H, D], k/v [T, KVH, D] for the new tokens; caches [blocks, block_size, KVH, D].
    Returns [T, H, D]. Grouped-query attention via SDPA's enable_gqa (no K/V repeat)."""
    kvh, d = k.shape[1], k.shape[2]
    k_flat, v_flat = k_cache.view(-1, kvh, d), v_cache.view(-1, kvh, d)
    k_flat.index_copy_(0, meta.slot_mapping, k)
    v_flat.index_copy_(0, meta.slot_mapping, v)
    keys = k_flat.index_select(0, meta.kv_slots).transpose(0, 1)  # [KVH, S, D]
    values = v_flat.index_select(0, meta.kv_slots).transpose(0, 1)
    queries = q.transpose(0, 1)  # [H, T, D]
    out = torch.empty_like(queries)
    gqa = q.shape[1] != kvh
    window = meta.sliding_window
    for q0, q1, kv0, ctx in meta.seqs:
        n, lo = q1 - q0, 0
        if window is not None and n == 1 and ctx > window:
            lo = ctx - window  # decode under a sliding window: only the last `window` keys
        qi = queries[:, q0:q1]
        ki, vi = keys[:, kv0 + lo:kv0 + ctx], values[:, kv0 + lo:kv0 + ctx]
        if n == 1:
            o = F.scaled_dot_product_attention(qi, ki, vi, scale=scale, enable_gqa=gqa)
        elif n == ctx and (window is None or ctx <= window):
            o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, scale=scale, enable_gqa=gqa)
        else:  # a chunk after cached tokens, or a window: explicit mask
            mask = _mask(n, ctx, window, q.device)
            o = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, scale=scale, enable_gqa=gqa)
        out[:, q0:q1] = o
    return out.transpose(0, 1)
