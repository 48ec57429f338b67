"""FlashInfer backend: paged attention kernels that read our pool in place (GPU only).

Our pool [blocks, block_size, kv_heads, head_dim] per layer is FlashInfer's NHD paged layout,
so `run(q, (k_cache, v_cache))` needs no copy. One `plan()` per iteration (it builds the
kernels' work partition on the host and copies the page tables to the device): the decode
wrapper when every row decodes, else the prefill wrapper for all rows (causal, bottom-right
aligned: a row's queries are the last `n` positions of its context, as ours are). GQA is
native; the sliding window is `window_left = window - 1` (FlashInfer's window is inclusive of
the left edge, transformers keeps the last `window` keys). Blocks freed by the window are left
out of the page list: the kernel sees a shorter context whose tail is aligned the same way.
API: flashinfer.prefill.BatchPrefillWithPagedKVCacheWrapper and
flashinfer.decode.BatchDecodeWithPagedKVCacheWrapper (plan/run), docs.flashinfer.ai.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from tenancy.serving.models.paged_kv import Spans, live, store_kv

WORKSPACE_BYTES = 128 * 1024 * 1024  # FlashInfer's documented example size


class PlanInputs(NamedTuple):
    """CSR page tables, int32 on the host (plan() copies them to the device itself)."""

    qo_indptr: torch.Tensor  # [B+1] query rows of each request in the flat batch
    kv_indptr: torch.Tensor  # [B+1] into kv_indices
    kv_indices: torch.Tensor  # pages of each request, in order, freed ones left out
    last_page_len: torch.Tensor  # [B] tokens in each request's last page, 1..block_size
    decode_only: bool


def plan_inputs(spans: Spans, block_size: int) -> PlanInputs:
    qo, kv, pages, last = [0], [0], [], []
    for n, ctx, blocks in zip(spans.n, spans.ctx, spans.blocks):
        end = -(-ctx // block_size)
        held = blocks[live(blocks):end]
        pages.extend(held)
        qo.append(qo[-1] + n)
        kv.append(kv[-1] + len(held))
        last.append(ctx - (end - 1) * block_size)
    i32 = torch.int32
    return PlanInputs(torch.tensor(qo, dtype=i32), torch.tensor(kv, dtype=i32), torch.tensor(pages, dtype=i32),
                      torch.tensor(last, dtype=i32), all(n == 1 for n in spans.n))


class FlashInferAttention:
    name = "flashinfer"

    def __init__(self, block_size: int, window: Optional[int], device: torch.device, model) -> None:
        import flashinfer

        self.block_size = block_size
        self.window_left = -1 if window is None else window - 1
        self.heads, (_, self.kv_heads, self.head_dim) = model.num_heads, model.kv_shape
        self.scale, self.dtype = model.attn_scale, next(model.parameters()).dtype
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        self.prefill = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
        self.decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(workspace, "NHD")

    def plan(self, spans: Spans, slot_mapping: torch.Tensor) -> None:
        self.slot_mapping = slot_mapping
        p = plan_inputs(spans, self.block_size)
        common = dict(window_left=self.window_left, sm_scale=self.scale, q_data_type=self.dtype,
                      kv_data_type=self.dtype)
        if p.decode_only:
            self.decode.plan(p.kv_indptr, p.kv_indices, p.last_page_len, self.heads, self.kv_heads,
                             self.head_dim, self.block_size, **common)
            self.wrapper = self.decode
        else:
            self.prefill.plan(p.qo_indptr, p.kv_indptr, p.kv_indices, p.last_page_len, self.heads,
                              self.kv_heads, self.head_dim, self.block_size, causal=True, **common)
            self.wrapper = self.prefill

    def __call__(self, q, k, v, k_cache, v_cache, scale):
        store_kv(k, v, k_cache, v_cache, self.slot_mapping)
        return self.wrapper.run(q, (k_cache, v_cache))
