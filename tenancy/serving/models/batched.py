"""Batched paged attention: one SDPA call per layer for all decode rows, one for all prefill rows.

`plan()` (once per iteration, shared by every layer) pads each group's block tables to the
group's widest context and builds one additive mask for it; a layer then gathers the group's
blocks in one `index_select` (whole blocks: contiguous copies), and calls SDPA on 4-D inputs,
so the fused kernels apply and the number of calls per layer does not grow with the batch.
A lone fresh prompt (the common prefill) skips the gather and uses the new K/V with is_causal.

Why a gather at all: stock PyTorch has no paged kernel. On a GPU the flashinfer backend reads
the pool in place; this backend is the CPU default and the GPU fallback.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from tenancy.serving.models.paged_kv import Spans, live, store_kv, window_mask
from tenancy.serving.models.paged_kv import long_tensor as _long


class Group(NamedTuple):
    """Rows of one kind, padded: `table` [B*W] block ids, `mask` [B, 1, Q, W*bs] additive (0 or
    -inf: SDPA would convert a boolean mask in every layer)."""

    rows: Optional[torch.Tensor]  # flat query rows of the group in the batch, None = all, in order
    table: torch.Tensor
    mask: torch.Tensor
    width: int  # blocks per row
    q_idx: Optional[torch.Tensor]  # prefill: padded [B*Q] query rows; None for decode
    out_idx: Optional[torch.Tensor]  # prefill: which of the B*Q padded outputs are real
    causal_only: bool  # one fresh prompt: SDPA is_causal on the new K/V, no gather


class BatchedAttention:
    name = "batched"

    def __init__(self, block_size: int, window: Optional[int], h2d, dtype: torch.dtype = torch.float32) -> None:
        self.block_size, self.window, self.h2d, self.dtype = block_size, window, h2d, dtype

    def plan(self, spans: Spans, slot_mapping: torch.Tensor) -> None:
        self.slot_mapping = slot_mapping
        ns = spans.n
        if all(n == 1 for n in ns):
            self.decode, self.prefill = self._group(spans, True), None
            return
        dec = [i for i, n in enumerate(ns) if n == 1]
        pre = [i for i, n in enumerate(ns) if n > 1]
        self.decode = self._group(spans.select(dec), False) if dec else None
        self.prefill = self._group(spans.select(pre), not dec)

    def _group(self, spans: Spans, whole: bool) -> Group:
        bs, window, h2d = self.block_size, self.window, self.h2d
        q_starts, ns, ctxs, tables = spans
        if len(ns) == 1 and ns[0] == ctxs[0] and (window is None or ctxs[0] <= window):
            rows = None if whole else h2d(torch.arange(q_starts[0], q_starts[0] + ns[0]))
            return Group(rows, None, None, 0, None, None, True)
        firsts = [live(t) for t in tables] if window is not None else [0] * len(ns)
        ends = [(c + bs - 1) // bs for c in ctxs]
        width = max(e - f for e, f in zip(ends, firsts))
        table, pad = [], [0] * width  # padding: any block, masked out
        for t, f, e in zip(tables, firsts, ends):
            table += t[f:e]
            table += pad[:width - e + f]
        b, q_len = len(ns), max(ns)
        per_row = _long(ctxs + ns + [f * bs for f in firsts])
        ctx, n, start = per_row[:b, None], per_row[b:2 * b, None], per_row[2 * b:, None]
        k_pos = start + torch.arange(width * bs)[None, :]  # [B, W*bs]
        q_idx = out_idx = None
        if q_len == 1:  # decode: one query at position ctx - 1
            keep = k_pos < ctx
            if window is not None:
                keep &= k_pos > ctx - 1 - window
            keep = keep[:, None, None, :]
        else:
            i = torch.arange(q_len)[None, :]
            q_pos = ctx - n + torch.minimum(i, n - 1)  # padded queries repeat the last real one
            keep = (window_mask(q_pos[:, :, None], k_pos[:, None, :], window) & (k_pos < ctx)[:, None, :])[:, None]
            q_idx = h2d((_long(q_starts)[:, None] + torch.minimum(i, n - 1)).flatten())
            out_idx = h2d((i < n).flatten().nonzero().squeeze(1))
        mask = torch.full(keep.shape, float("-inf"), dtype=self.dtype).masked_fill_(keep, 0.0)
        rows = None if whole else h2d(_long([q + j for q, m in zip(q_starts, ns) for j in range(m)]))
        return Group(rows, h2d(_long(table)), h2d(mask), width, q_idx, out_idx, False)

    def __call__(self, q, k, v, k_cache, v_cache, scale):
        store_kv(k, v, k_cache, v_cache, self.slot_mapping)
        if self.prefill is None:
            return self._run(self.decode, q, k, v, k_cache, v_cache, scale)
        if self.decode is None:
            return self._run(self.prefill, q, k, v, k_cache, v_cache, scale)
        out = torch.empty_like(q)
        for g in (self.decode, self.prefill):
            out.index_copy_(0, g.rows, self._run(g, q, k, v, k_cache, v_cache, scale))
        return out

    def _run(self, g: Group, q, k, v, k_cache, v_cache, scale) -> torch.Tensor:
        """Attention output [rows of the group, H, D] in the group's row order."""
        h, kvh, d = q.shape[1], k.shape[1], k.shape[2]
        gqa = h != kvh
        if g.causal_only:
            if g.rows is not None:
                q, k, v = q[g.rows], k[g.rows], v[g.rows]
            o = F.scaled_dot_product_attention(q.transpose(0, 1)[None], k.transpose(0, 1)[None],
                                               v.transpose(0, 1)[None], is_causal=True, scale=scale, enable_gqa=gqa)
            return o[0].transpose(0, 1)
        b = g.mask.shape[0]
        keys = k_cache.index_select(0, g.table).view(b, -1, kvh, d).transpose(1, 2)  # [B, KVH, W*bs, D]
        values = v_cache.index_select(0, g.table).view(b, -1, kvh, d).transpose(1, 2)
        if g.q_idx is None:  # decode: one query per row; a KV head's query heads become its query rows
            queries = (q if g.rows is None else q[g.rows]).view(b, kvh, h // kvh, d)  # [B, KVH, H/KVH, D]
            o = F.scaled_dot_product_attention(queries, keys, values, attn_mask=g.mask, scale=scale)
            return o.view(b, h, d)  # (GQA's head order: query head i reads KV head i // (H/KVH))
        queries = q[g.q_idx].view(b, -1, h, d).transpose(1, 2)  # [B, H, Q, D]
        o = F.scaled_dot_product_attention(queries, keys, values, attn_mask=g.mask, scale=scale, enable_gqa=gqa)
        return o.transpose(1, 2).reshape(-1, h, d)[g.out_idx]
