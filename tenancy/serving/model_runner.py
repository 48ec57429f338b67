"""Runs one iteration on the device: flattens the batch, owns the KV pool, samples tokens.

`prepare` turns a scheduled batch into flat tensors (token ids, positions, the pool slot of
every new token, the slots of every request's context) with a handful of vectorised ops, so its
CPU cost grows slowly with the batch. The model then runs once over [total_tokens, hidden].
"""
from __future__ import annotations

import os
from array import array
from typing import Optional

import torch

from tenancy.serving.block_manager import cdiv
from tenancy.serving.models import from_hf
from tenancy.serving.models.attention import AttnMeta
from tenancy.serving.scheduler import Batch
from tenancy.serving.sequence import Sequence


def kv_bytes_per_block(kv_shape: tuple[int, int, int], block_size: int, dtype: torch.dtype) -> int:
    layers, kv_heads, head_dim = kv_shape
    return 2 * layers * block_size * kv_heads * head_dim * torch.empty(0, dtype=dtype).element_size()


def auto_num_blocks(device: torch.device, bytes_per_block: int, fraction: float, cap: Optional[int]) -> int:
    """Blocks that fit in `fraction` of the free memory (device memory on CUDA, RAM on CPU)."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    n = int(free * fraction) // bytes_per_block
    return max(1, min(n, cap) if cap else n)


def _long(values: list[int]) -> torch.Tensor:
    """List of ints -> int64 tensor, ~3x faster than torch.tensor(list) for hundreds of items."""
    return torch.frombuffer(array("q", values), dtype=torch.int64) if values else torch.empty(0, dtype=torch.int64)


class ModelRunner:
    def __init__(self, hf_model: torch.nn.Module, block_size: int, num_blocks: Optional[int] = None,
                 kv_memory_fraction: float = 0.5, max_blocks: Optional[int] = None, seed: int = 0):
        self.model = from_hf(hf_model)
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.block_size = block_size
        self.kv_shape = self.model.kv_shape
        self.bytes_per_block = kv_bytes_per_block(self.kv_shape, block_size, self.dtype)
        if num_blocks is None:
            num_blocks = auto_num_blocks(self.device, self.bytes_per_block, kv_memory_fraction, max_blocks)
        self.num_blocks = num_blocks
        layers, kv_heads, head_dim = self.kv_shape
        shape = (num_blocks, block_size, kv_heads, head_dim)
        self.kv_caches = [(torch.zeros(shape, dtype=self.dtype, device=self.device),
                           torch.zeros(shape, dtype=self.dtype, device=self.device)) for _ in range(layers)]
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self.block_offsets = torch.arange(block_size)

    def prepare(self, batch: Batch):
        """Flatten the batch: ids/positions/slots for the new tokens, context slots per request."""
        bs = self.block_size
        ids: list[int] = []
        blocks: list[int] = []
        block_start: list[int] = []
        starts: list[int] = []
        seqs_meta: list[tuple[int, int, int, int]] = []
        logits_idx: list[int] = []
        emitting: list[Sequence] = []
        q0 = 0
        for seq, n in zip(batch.seqs, batch.num_new):
            c = seq.num_computed
            ctx = c + n
            if n == 1:
                ids.append(seq.token_ids[c])
            else:
                ids.extend(seq.token_ids[c:ctx])
            b0 = len(blocks)
            block_start.append(b0)
            table = seq.block_table
            blocks.extend(table if len(table) * bs < ctx + bs else table[:cdiv(ctx, bs)])
            starts.append(c)
            seqs_meta.append((q0, q0 + n, b0 * bs, ctx))
            q0 += n
            if ctx == seq.num_tokens:
                logits_idx.append(q0 - 1)
                emitting.append(seq)
        b = len(starts)
        per_seq = _long(batch.num_new + starts + block_start)  # one host->tensor conversion
        q_lens, start_t, block_start_t = per_seq[:b], per_seq[b:2 * b], per_seq[2 * b:]
        if q0 == b:  # decode only: one token per request
            positions, token_block_start = start_t, block_start_t
        else:
            seq_idx = torch.repeat_interleave(torch.arange(b), q_lens)
            offset = start_t - (torch.cumsum(q_lens, 0) - q_lens)  # position - flat index
            positions, token_block_start = torch.arange(q0) + offset[seq_idx], block_start_t[seq_idx]
        kv_slots = (_long(blocks)[:, None] * bs + self.block_offsets).flatten()
        slot_mapping = kv_slots[token_block_start * bs + positions]
        dev = self.device
        meta = AttnMeta(slot_mapping.to(dev), kv_slots.to(dev), seqs_meta, self.model.sliding_window)
        tensors = (_long(ids).to(dev), positions.to(dev), _long(logits_idx).to(dev))
        return tensors, meta, emitting

    @torch.inference_mode()
    def forward(self, prepared) -> list[int]:
        (input_ids, positions, logits_idx), meta, emitting = prepared
        logits = self.model(input_ids, positions, self.kv_caches, meta, logits_idx)
        return self.sample(logits, emitting)

    def sample(self, logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
        """Greedy by default; temperature / top-p per request from a seeded generator.
        `.tolist()` synchronises the device, so token timestamps taken after it are real."""
        if not seqs:
            return []
        greedy = logits.argmax(-1)
        temps = [s.temperature for s in seqs]
        if not any(temps):
            return greedy.tolist()
        t = torch.tensor(temps, device=logits.device, dtype=torch.float32).clamp_min(1e-5)[:, None]
        probs = torch.softmax(logits.float() / t, dim=-1)
        top_p = torch.tensor([s.top_p for s in seqs], device=logits.device)[:, None]
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set reaching top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        choice = torch.multinomial(sorted_p, 1, generator=self.generator)
        sampled = order.gather(-1, choice).squeeze(-1)
        is_greedy = torch.tensor([x == 0 for x in temps], device=logits.device)
        return torch.where(is_greedy, greedy, sampled).tolist()
