"""Runs one iteration on the device: flattens the batch, owns the KV pool, samples tokens.

`prepare` turns a scheduled batch into flat tensors (token ids, positions, the pool slot of each
new token) and hands the per-request spans to the attention backend's `plan()`, once for all
layers. The model then runs once over [total_tokens, hidden]. On CUDA, host tensors go through
pinned memory with non-blocking copies (`pinned_staging`), decode iterations replay CUDA graphs
(`cuda_graphs`, cuda_graph.py), and the sampled tokens come back through one non-blocking
copy into pinned memory and one event wait (`InFlight`): the iteration's only host sync, which
the engine defers past the next schedule under async scheduling.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from tenancy.serving import memory
from tenancy.serving.config import ServingConfig
from tenancy.serving.models import from_hf
from tenancy.serving.models.attention import make_backend, resolve
from tenancy.serving.models.paged_kv import Spans, long_tensor
from tenancy.serving.sampler import Sampler
from tenancy.serving.scheduler import Batch
from tenancy.serving.sequence import PENDING, Sequence


def kv_bytes_per_block(kv_shape: tuple[int, int, int], block_size: int, dtype: torch.dtype) -> int:
    layers, kv_heads, head_dim = kv_shape
    return 2 * layers * block_size * kv_heads * head_dim * torch.empty(0, dtype=dtype).element_size()


class InFlight(NamedTuple):
    """An iteration's sampled tokens on their way to the host (async scheduling): the device
    tensor (the next iteration reads its inputs there), a pinned host copy queued with
    non_blocking, and the event recorded after it on the stream (None on a CPU)."""

    emitting: list[Sequence]
    device: torch.Tensor
    host: torch.Tensor
    done: Optional["torch.cuda.Event"]

    def tokens(self) -> list[int]:
        """The iteration's one host sync: wait for this copy's event only (never the device)."""
        if self.done is not None:
            self.done.synchronize()
        return self.host.tolist()


class Prepared(NamedTuple):
    input_ids: torch.Tensor
    positions: torch.Tensor
    logits_idx: torch.Tensor
    emitting: list[Sequence]  # requests that sample a token this iteration, in logits order
    decode_only: bool


class ModelRunner:
    def __init__(self, hf_model: torch.nn.Module, cfg: ServingConfig, max_blocks: Optional[int] = None,
                 mem_limit_bytes: Optional[int] = None, max_seq_len: Optional[int] = None):
        self.model = from_hf(hf_model)
        param = next(self.model.parameters())
        self.device, self.dtype = param.device, param.dtype
        cuda = self.device.type == "cuda"
        self.pinned = cuda and cfg.pinned_staging
        self.block_size = bs = cfg.block_size
        self.kv_shape = self.model.kv_shape
        self.bytes_per_block = kv_bytes_per_block(self.kv_shape, bs, self.dtype)
        num_blocks = cfg.num_blocks
        if num_blocks is None:
            weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
            budget = memory.kv_budget_bytes(memory.device_total_bytes(self.device), weights,
                                            cfg.kv_memory_fraction, cfg.kv_cache_gb, mem_limit_bytes)
            num_blocks = memory.num_blocks_for(budget, self.bytes_per_block, max_blocks)
        self.num_blocks = num_blocks
        self.scratch_block = num_blocks  # one extra block: padded rows of a CUDA graph write here
        layers, kv_heads, head_dim = self.kv_shape
        shape = (num_blocks + 1, bs, kv_heads, head_dim)
        with torch.inference_mode():  # written only under inference mode: skips version counting
            self.kv_caches = [(torch.zeros(shape, dtype=self.dtype, device=self.device),
                               torch.zeros(shape, dtype=self.dtype, device=self.device)) for _ in range(layers)]
        self.backend_name, self.backend_note = resolve(cfg.attention_backend, self.device)
        window = self.model.sliding_window
        self.attn = make_backend(self.backend_name, self.device, bs, window, self.h2d, self.model)
        self.sampler = Sampler(self.device, cfg.seed, self.h2d)
        self.graphs = None
        if cuda and cfg.cuda_graphs and self.backend_name == "batched" and max_seq_len:
            from tenancy.serving.cuda_graph import DecodeGraphs

            self.graphs = DecodeGraphs(self, cfg.max_batch_size, -(-max_seq_len // bs))

    def h2d(self, t: torch.Tensor) -> torch.Tensor:
        """Host tensor -> device. Pinned + non-blocking on CUDA: the copy is queued on the stream,
        the host goes on (the caching host allocator keeps the pinned block until it completes)."""
        if self.device.type == "cpu":
            return t
        if self.pinned:
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def prepare(self, batch: Batch, prev: Optional[InFlight] = None) -> Prepared:
        """Flatten the batch (a tight loop: it runs for every request of every iteration). A
        PENDING input token (async scheduling) is read on the device from `prev`'s output."""
        bs = self.block_size
        ids: list[int] = []
        positions: list[int] = []
        slots: list[int] = []
        spans = Spans([], [], [], [])
        logits_idx: list[int] = []
        emitting: list[Sequence] = []
        fix_dst: list[int] = []
        fix_src: list[int] = []
        q_start, n_new, ctx_len, tables = spans.q_start.append, spans.n.append, spans.ctx.append, spans.blocks.append
        q0 = 0
        for seq, n in zip(batch.seqs, batch.num_new):
            c, table, tokens = seq.num_computed, seq.block_table, seq.token_ids
            ctx = c + n
            if n == 1:
                if (tok := tokens[c]) == PENDING:
                    fix_dst.append(len(ids))
                    fix_src.append(seq.out_row)
                ids.append(tok)
                positions.append(c)
                slots.append(table[c // bs] * bs + c % bs)
            else:
                ids += tokens[c:ctx]
                positions += range(c, ctx)
                slots += [table[p // bs] * bs + p % bs for p in range(c, ctx)]
            q_start(q0)
            n_new(n)
            ctx_len(ctx)
            tables(table)
            q0 += n
            if ctx == len(tokens):
                logits_idx.append(q0 - 1)
                emitting.append(seq)
        h2d = self.h2d
        self.attn.plan(spans, h2d(long_tensor(slots)))  # its own tensor: index_copy_ is slower on a view
        input_ids = h2d(long_tensor(ids))
        if fix_dst:  # stream-ordered after the previous iteration's sampling: no host sync
            input_ids.index_copy_(0, h2d(long_tensor(fix_dst)), prev.device.index_select(0, h2d(long_tensor(fix_src))))
        return Prepared(input_ids, h2d(long_tensor(positions)), h2d(long_tensor(logits_idx)),
                        emitting, q0 == len(batch.seqs))

    @torch.inference_mode()
    def run(self, p: Prepared) -> torch.Tensor:
        """Model + sampling, left on the device: one token per emitting request."""
        if self.graphs is not None and p.decode_only and self.graphs.fits(len(p.input_ids), self.attn):
            logits = self.graphs.replay(p, self.attn)
        else:
            logits = self.model(p.input_ids, p.positions, self.kv_caches, self.attn, p.logits_idx)
        return self.sampler(logits, p.emitting) if p.emitting else torch.empty(0, dtype=torch.long)

    def launch(self, p: Prepared) -> InFlight:
        """Model + sampling queued on the device, and the tokens' copy to the host queued behind
        them (pinned, non_blocking, an event after it); nothing here waits for the device."""
        out = self.run(p)
        if out.device.type == "cpu":
            return InFlight(p.emitting, out, out, None)
        host = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        host.copy_(out, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return InFlight(p.emitting, out, host, done)
