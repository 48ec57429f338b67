"""CUDA graphs for decode iterations (batched backend), captured at padded batch sizes.

A decode iteration issues the same kernels whatever its data, so its launches are recorded once
per padded batch size (1, 2, 4, 8, then multiples of 16 up to max_batch_size, as nano-vllm)
and replayed: one launch instead of hundreds, which is what keeps a small model's decode off the
host's critical path. By construction (torch.cuda.CUDAGraph semantics):
- a graph reads and writes fixed addresses, so every input lives in a static buffer sized for
  the largest batch and the widest context (max_seq_len), and each replay copies the
  iteration's tensors into a prefix of them (device-to-device, stream-ordered);
- rows past the real batch are padding: token 0 at position 0, writing its K/V into the pool's
  scratch block, attending to one key of it; their logits are never read;
- each size is warmed up eagerly once (on a side stream), then captured, largest first, all sizes sharing one
  memory pool (torch.cuda.graph(pool=...)); no host sync happens inside a capture.
Sampling runs eagerly after the replay (per-request generators).
"""
from __future__ import annotations

import torch

from tenancy.serving.models.batched import BatchedAttention, Group


def padded_sizes(max_batch: int) -> list[int]:
    sizes = [b for b in (1, 2, 4, 8) if b < max_batch] + list(range(16, max_batch, 16))
    return sizes + [max_batch]


class DecodeGraphs:
    def __init__(self, runner, max_batch: int, max_blocks: int) -> None:
        self.runner, self.width = runner, max_blocks
        bs, dev = runner.block_size, runner.device
        self.sizes = padded_sizes(max_batch)
        self.ids = torch.zeros(max_batch, dtype=torch.long, device=dev)
        self.pos = torch.zeros(max_batch, dtype=torch.long, device=dev)
        self.slots = torch.full((max_batch,), runner.scratch_block * bs, dtype=torch.long, device=dev)
        self.table = torch.full((max_batch, max_blocks), runner.scratch_block, dtype=torch.long, device=dev)
        self.mask = torch.full((max_batch, 1, 1, max_blocks * bs), float("-inf"), dtype=runner.dtype, device=dev)
        self.mask[:, :, :, 0] = 0.0  # additive mask: padding rows attend to one (scratch) key
        self.rows = torch.arange(max_batch, device=dev)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._capture()

    @torch.inference_mode()
    def _capture(self) -> None:
        r, pool = self.runner, None
        for b in reversed(self.sizes):
            attn = BatchedAttention(r.block_size, r.model.sliding_window, r.h2d, r.dtype)
            attn.slot_mapping, attn.prefill = self.slots[:b], None
            attn.decode = Group(None, self.table[:b].flatten(), self.mask[:b], self.width, None, None, False)

            def step(b=b, attn=attn) -> torch.Tensor:
                return r.model(self.ids[:b], self.pos[:b], r.kv_caches, attn, self.rows[:b])

            side = torch.cuda.Stream()  # warm-up on a side stream, as the torch.cuda.graph docs do:
            side.wait_stream(torch.cuda.current_stream())  # lazy init must not happen inside a capture
            with torch.cuda.stream(side):
                step()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = step()
            pool = graph.pool()
            self.graphs[b] = (graph, out)
        torch.cuda.current_stream().synchronize()

    def fits(self, n: int, attn) -> bool:
        g = getattr(attn, "decode", None)
        return n <= self.sizes[-1] and g is not None and g.table is not None and g.width <= self.width

    def replay(self, p, attn) -> torch.Tensor:
        """Logits [n, vocab] of a decode-only iteration already planned eagerly by `attn`."""
        n = len(p.input_ids)
        b = next(s for s in self.sizes if s >= n)
        g, bs, w = attn.decode, self.runner.block_size, attn.decode.width
        self.ids[:n].copy_(p.input_ids)
        self.pos[:n].copy_(p.positions)
        self.slots[:n].copy_(attn.slot_mapping)
        self.table[:n, :w].copy_(g.table.view(n, w))
        self.table[:n, w:] = self.runner.scratch_block
        self.mask[:n, :, :, :w * bs].copy_(g.mask)
        self.mask[:n, :, :, w * bs:] = float("-inf")
        if b > n:  # padding rows, as at capture
            self.ids[n:b] = 0
            self.pos[n:b] = 0
            self.slots[n:b] = self.runner.scratch_block * bs
            self.table[n:b] = self.runner.scratch_block
            self.mask[n:b] = float("-inf")
            self.mask[n:b, :, :, 0] = 0.0
        graph, out = self.graphs[b]
        graph.replay()
        return out[:n]
