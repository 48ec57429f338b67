"""Token sampling with per-request parameters and a generator per request.

Greedy rows take the argmax. Sampled rows apply temperature, then top-k and top-p on one sort,
then draw with the exponential race (argmax of p / E, E ~ Exp(1), as vLLM) where each row's
noise comes from its own request's generator: a request's tokens depend on its seed and its
logits only, never on which requests share its batch. The result stays on the device; the
caller decides when to synchronise.
"""
from __future__ import annotations

import torch

from tenancy.serving.sequence import Sequence


class Sampler:
    def __init__(self, device: torch.device, seed: int) -> None:
        self.device, self.seed = device, seed

    def generator(self, seq: Sequence) -> torch.Generator:
        """The request's own generator, seeded once: its seed, or one derived from (engine seed, id)."""
        if seq.generator is None:
            seed = seq.params.seed if seq.params.seed is not None else (self.seed * 1_000_003 + seq.id) % 2**63
            seq.generator = torch.Generator(self.device).manual_seed(seed)
        return seq.generator

    def __call__(self, logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
        """logits [B, V] for `seqs`; returns B token ids (int64, on the logits' device)."""
        greedy = logits.argmax(-1)
        rows = [i for i, s in enumerate(seqs) if s.params.temperature > 0]
        if not rows:
            return greedy
        picked = [seqs[i] for i in rows]
        dev = logits.device
        x = logits[torch.tensor(rows, device=dev)].float()
        x = x / torch.tensor([s.params.temperature for s in picked], device=dev)[:, None]
        sorted_x, order = x.sort(-1, descending=True)
        probs = sorted_x.softmax(-1)
        vocab = x.shape[1]
        k = torch.tensor([s.params.top_k if 0 < s.params.top_k < vocab else vocab for s in picked], device=dev)
        top_p = torch.tensor([s.params.top_p for s in picked], device=dev)[:, None]
        rank = torch.arange(vocab, device=dev)[None, :]
        drop = (rank >= k[:, None]) | (probs.cumsum(-1) - probs > top_p)  # keep the smallest set reaching top_p
        probs = probs.masked_fill(drop, 0.0)
        noise = torch.stack([torch.empty(vocab, device=dev).exponential_(generator=self.generator(s)) for s in picked])
        choice = (probs / noise).argmax(-1, keepdim=True)
        out = greedy.clone()
        out[torch.tensor(rows, device=dev)] = order.gather(-1, choice).squeeze(-1)
        return out
