"""Batched paged attention: one SDPA call per layer for all decode rows, one for all prefill rows.

`plan()` (once per iteration, shared by every layer) pads each group's block tables to the
group's widest context and builds one boolean mask for it; a layer then gathers the group's
blocks in one `index_select` (whole blocks: contiguous copies), and calls SDPA on 4-D inputs,
so the fused kernels apply and the number of calls per layer does not grow with the batch.
A lone fresh prompt (the common prefill) skips the gather and uses the new K/V with is_causal.

Why a gather at all: stock PyTorch has no paged kernel. On a GPU the flashinfer backend reads
the pool in place; this backend is the CPU default and the GPU fallback.
"""
from __future__ import annotations

from array import array
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from tenancy.serving.models.attention import Span, live, store_kv, window_mask


def _long(values: list[int]) -> torch.Tensor:
    """List of ints -> int64 tensor (faster than torch.tensor for hundreds of items)."""
    return torch.frombuffer(array("q", values), dtype=torch.int64) if values else torch.empty(0, dtype=torch.int64)


class Group(NamedTuple):
    """Rows of one kind, padded: `table` [B*W] block ids, `mask` [B, 1, Q, W*bs]."""

    rows: Optional[torch.Tensor]  # flat query rows of the group in the batch, None = all, in order
    table: torch.Tensor
    mask: torch.Tensor
    width: int  # blocks per row
    q_idx: Optional[torch.Tensor]  # prefill: padded [B*Q] query rows; None for decode
    out_idx: Optional[torch.Tensor]  # prefill: which of the B*Q padded outputs are real
    causal_only: bool  # one fresh prompt: SDPA is_causal on the new K/V, no gather


class BatchedAttention:
    name = "batched"

    def __init__(self, block_size: int, window: Optional[int], h2d) -> None:
        self.block_size, self.window, self.h2d = block_size, window, h2d

    def plan(self, spans: list[Span], slot_mapping: torch.Tensor) -> None:
        self.slot_mapping = slot_mapping
        self.num_tokens = sum(s.n for s in spans)
        decode = [s for s in spans if s.n == 1]
        prefill = [s for s in spans if s.n > 1] if len(decode) < len(spans) else []
        self.decode = self._group(decode, len(decode) == len(spans)) if decode else None
        self.prefill = self._group(prefill, len(prefill) == len(spans)) if prefill else None

    def _group(self, spans: list[Span], whole: bool) -> Group:
        bs, window = self.block_size, self.window
        if len(spans) == 1 and spans[0].n == spans[0].ctx and (window is None or spans[0].ctx <= window):
            s = spans[0]
            rows = None if whole else self.h2d(torch.arange(s.q_start, s.q_start + s.n))
            return Group(rows, None, None, 0, None, None, True)
        firsts = [live(s.blocks) for s in spans]
        ends = [-(-s.ctx // bs) for s in spans]
        width = max(e - f for e, f in zip(ends, firsts))
        table, starts = [], []
        for s, f, e in zip(spans, firsts, ends):
            table.extend(s.blocks[f:e])
            table.extend([0] * (width - e + f))  # padding: any block, masked out
            starts.append(f * bs)
        q_len = max(s.n for s in spans)
        per_row = _long([s.ctx for s in spans] + [s.n for s in spans] + starts)
        b = len(spans)
        ctx, n, start = per_row[:b, None], per_row[b:2 * b, None], per_row[2 * b:, None]
        i = torch.arange(q_len)[None, :]
        q_pos = ctx - n + torch.minimum(i, n - 1)  # padded queries repeat the last real one
        k_pos = start + torch.arange(width * bs)[None, :]  # [B, W*bs]
        mask = window_mask(q_pos[:, :, None], k_pos[:, None, :], window) & (k_pos < ctx)[:, None, :]
        q_idx = out_idx = None
        if q_len > 1:
            q_start = _long([s.q_start for s in spans])[:, None]
            q_idx = self.h2d((q_start + torch.minimum(i, n - 1)).flatten())
            out_idx = self.h2d((i < n).flatten().nonzero().squeeze(1))
        rows = None if whole else self.h2d(_long([s.q_start + j for s in spans for j in range(s.n)]))
        return Group(rows, self.h2d(_long(table)), self.h2d(mask[:, None]), width, q_idx, out_idx, False)

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
        if g.q_idx is None:  # decode: one query per row
            queries = (q if g.rows is None else q[g.rows])[:, :, None]  # [B, H, 1, D]
            o = F.scaled_dot_product_attention(queries, keys, values, attn_mask=g.mask, scale=scale, enable_gqa=gqa)
            return o[:, :, 0]
        queries = q[g.q_idx].view(b, -1, h, d).transpose(1, 2)  # [B, H, Q, D]
        o = F.scaled_dot_product_attention(queries, keys, values, attn_mask=g.mask, scale=scale, enable_gqa=gqa)
        return o.transpose(1, 2).reshape(-1, h, d)[g.out_idx]
