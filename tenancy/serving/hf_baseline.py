"""The transformers `generate` baseline (`engine: hf`): request-level batching with other model code.

`engine: request` (request_level.py) is the fair baseline: same model code and kernels as the
iteration-level engine. This one is kept to compare against a stock implementation. Take up to `max_batch_size` waiting requests, run them to completion as one left-padded batch
with transformers `generate` (attention mask, so padding does not change results), return all of
them when the longest is done, only then take the next batch. Short requests wait for long ones
and new arrivals wait for the whole batch: the two costs iteration-level scheduling removes.
Token times are recorded as generated (a stopping criterion stamps each step) but `finish_s`,
when the response is returned, is the end of the batch.
"""
from __future__ import annotations

import time
from collections import deque

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from tenancy.serving.config import ServingConfig
from tenancy.serving.engine import eos_ids
from tenancy.serving.models import max_model_len
from tenancy.serving.sequence import SamplingParams, Sequence, Status
from tenancy.serving.workload import RequestSpec


class _StampSteps(StoppingCriteria):
    """Called once per generated token (after it is chosen): record when. Never stops."""

    def __init__(self, sync: bool):
        self.times: list[int] = []
        self.sync = sync

    def __call__(self, input_ids, scores, **kwargs):
        if self.sync:  # this stream only: other tenants' streams in the same context go on
            torch.cuda.current_stream().synchronize()
        self.times.append(time.perf_counter_ns())
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class HFEngine:
    name = "hf"

    def __init__(self, hf_model: torch.nn.Module, cfg: ServingConfig):
        self.model, self.cfg = hf_model, cfg
        self.device = next(hf_model.parameters()).device
        self.max_len = max_model_len(hf_model.config)
        self.vocab_size = hf_model.config.vocab_size
        self.eos_ids = eos_ids(hf_model.config)
        self.eos = None if cfg.ignore_eos or not self.eos_ids else sorted(self.eos_ids)
        self.waiting: deque[Sequence] = deque()
        self.pad_id = 0  # masked out; its value never matters
        torch.manual_seed(cfg.seed)

    def make_sequence(self, spec: RequestSpec, arrival_ns: int) -> Sequence:
        c = self.cfg
        params = SamplingParams(spec.output_len, c.temperature, c.top_p, c.top_k, None, c.ignore_eos)
        return Sequence(spec.id, spec.prompt, params, arrival_ns, self.eos_ids)

    def add(self, seq: Sequence, now_ns: int) -> bool:
        if seq.prompt_len < 1 or seq.max_new_tokens < 1:
            seq.fail("empty prompt or max_new_tokens < 1", now_ns)
            return False
        if self.max_len is not None and seq.max_len > self.max_len:
            seq.fail(f"prompt + max_new_tokens = {seq.max_len} > model max length {self.max_len}", now_ns)
            return False
        self.waiting.append(seq)
        return True

    def has_work(self) -> bool:
        return bool(self.waiting)

    @torch.inference_mode()
    def step(self) -> list[Sequence]:
        """Run one whole batch to completion; returns all of its requests."""
        batch = [self.waiting.popleft() for _ in range(min(self.cfg.max_batch_size, len(self.waiting)))]
        now = time.perf_counter_ns()
        width = max(s.prompt_len for s in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, s in enumerate(batch):
            s.status, s.admitted_ns = Status.RUNNING, now
            ids[i, width - s.prompt_len:] = torch.tensor(s.prompt)
            mask[i, width - s.prompt_len:] = 1
        stamps = _StampSteps(self.device.type == "cuda")
        sample = self.cfg.temperature > 0  # one setting for the batch: generate has no per-request sampling
        out = self.model.generate(
            ids.to(self.device), attention_mask=mask.to(self.device),
            max_new_tokens=max(s.max_new_tokens for s in batch), do_sample=sample,
            temperature=self.cfg.temperature if sample else None, top_p=self.cfg.top_p if sample else None,
            top_k=(self.cfg.top_k or None) if sample else None,
            eos_token_id=self.eos, pad_token_id=self.pad_id, stopping_criteria=StoppingCriteriaList([stamps]),
        )[:, width:].tolist()
        end = time.perf_counter_ns()
        for s, row in zip(batch, out):
            row = row[:s.max_new_tokens]
            if self.eos is not None:
                stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
                row = row if stop is None else row[:stop + 1]
            s.token_ids.extend(row)
            s.token_ns = stamps.times[:len(row)]
            s.status, s.finish_ns = Status.FINISHED, end
        return batch

    def warmup(self) -> None:
        seq = Sequence(-1, list(range(3, 11)), SamplingParams(2))
        if self.add(seq, 0):
            self.step()
