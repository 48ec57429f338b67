"""Iteration-level scheduler (Orca): decides, before every model iteration, who runs.

Each iteration: every running request gets its pending tokens (one decode token, or the rest of
a chunked prompt), oldest first; then waiting requests are admitted FCFS while the batch has a
slot (`max_batch_size`), the iteration has token budget (`max_tokens_per_iteration`) and the
block manager has KV blocks. Admission is strict FCFS: the head of the queue blocks the rest.

Long prompts: with `chunked_prefill=False` (Orca's behaviour) a prompt is prefilled in one
iteration; one prompt larger than the budget is still admitted when it is the first prefill of
an iteration (otherwise it could never run). With `chunked_prefill=True` prompts are split to
fill the remaining budget, and the rest continues in the next iterations.

Out of blocks (paged policy): the running request admitted first most recently is preempted
(blocks freed, requeued at the front of the queue, recomputed from prompt + generated tokens when
readmitted). Running requests stay ordered by their *first* admission, so a readmitted request
keeps its seniority and is not the next victim (no priority inversion). No request is admitted
in an iteration that preempted, so a preempted request cannot bounce straight back.

The token budget must cover the batch cap (config check), so every running decode gets its token
in every iteration. Under a sliding window, blocks that no future query can see are freed after
each iteration.
"""
from __future__ import annotations

from bisect import insort
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from tenancy.serving.block_manager import BlockManager
from tenancy.serving.sequence import Sequence, Status


@dataclass
class Batch:
    """What one iteration computes: `num_new[i]` pending tokens of `seqs[i]`."""

    seqs: list[Sequence] = field(default_factory=list)
    num_new: list[int] = field(default_factory=list)
    num_preempted: int = 0

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def num_tokens(self) -> int:
        return sum(self.num_new)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_batch_size: int, max_tokens_per_iteration: int,
                 chunked_prefill: bool = False, max_model_len: Optional[int] = None,
                 sliding_window: Optional[int] = None):
        self.bm = block_manager
        self.window = sliding_window
        self.num_admitted = 0
        self.max_batch_size = max_batch_size
        self.max_tokens = max_tokens_per_iteration
        self.chunked = chunked_prefill
        self.max_model_len = max_model_len
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # by first admission: the last is the newest

    def add(self, seq: Sequence, now_ns: int) -> bool:
        """Queue a request, or fail it at once if it can never run. Returns False if failed."""
        if seq.prompt_len < 1 or seq.max_new_tokens < 1:
            seq.fail("empty prompt or max_new_tokens < 1", now_ns)
        elif self.max_model_len is not None and seq.max_len > self.max_model_len:
            seq.fail(f"prompt + max_new_tokens = {seq.max_len} > model max length {self.max_model_len}", now_ns)
        elif not self.bm.fits_ever(seq):
            seq.fail(f"needs {seq.max_len} tokens of KV cache, the whole pool holds "
                     f"{self.bm.num_blocks * self.bm.block_size}", now_ns)
        else:
            self.waiting.append(seq)
            return True
        return False

    def abort(self, seq: Sequence, now_ns: int) -> None:
        """End a request early (a client left, a stop string matched): out of the queues, blocks freed.
        Under async scheduling its token still in flight is skipped by `commit` (it is done)."""
        if seq in self.waiting:
            self.waiting.remove(seq)
        elif seq in self.running:
            self.running.remove(seq)
        self.bm.free(seq)
        seq.fail("aborted", now_ns)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def _preempt(self, seq: Sequence) -> None:
        self.bm.free(seq)
        seq.num_computed = 0
        seq.status = Status.WAITING
        seq.num_preemptions += 1
        self.waiting.appendleft(seq)

    def schedule(self, now_ns: int) -> Batch:
        batch, budget, prefill_tokens = Batch(), self.max_tokens, 0
        running, i, bs = self.running, 0, self.bm.block_size
        while i < len(running):  # running requests first, oldest first
            seq = running[i]
            n = len(seq.token_ids) - seq.num_computed
            if n > 1 and self.chunked:
                n = min(n, budget)
            if n < 1 or n > budget:
                i += 1  # no budget left for it this iteration; it keeps its blocks
                continue
            room = seq.num_computed + n <= len(seq.block_table) * bs  # the common decode: no new block
            while not room and not self.bm.ensure(seq, n):
                victim = running.pop()  # newest first; may be `seq` itself
                self._preempt(victim)
                batch.num_preempted += 1
                if victim is seq:
                    break
            else:
                batch.seqs.append(seq)
                batch.num_new.append(n)
                budget -= n
                prefill_tokens += n if n > 1 else 0
                i += 1
        while self.waiting and not batch.num_preempted and len(running) < self.max_batch_size:
            seq = self.waiting[0]  # strict FCFS
            n = seq.num_tokens
            if n > budget:
                if self.chunked and budget > 0:
                    n = budget
                elif self.chunked or n <= self.max_tokens or prefill_tokens:
                    break  # wait for a fresh budget; a prompt over the whole budget goes alone
            if not self.bm.ensure(seq, n):
                break
            self.waiting.popleft()
            self._admit(seq, now_ns)
            batch.seqs.append(seq)
            batch.num_new.append(n)
            budget -= n
            prefill_tokens += n
        return batch

    def _admit(self, seq: Sequence, now_ns: int) -> None:
        seq.status = Status.RUNNING
        if seq.admitted_ns is None:
            seq.admitted_ns, seq.admit_order = now_ns, self.num_admitted
            self.num_admitted += 1
            self.running.append(seq)
        else:  # readmitted after a preemption: back to its place by first admission
            insort(self.running, seq, key=lambda s: s.admit_order)

    def postprocess(self, batch: Batch, tokens: list[int], now_ns: int) -> list[Sequence]:
        """Advance the batch by its computed tokens; `tokens` holds one sampled token for each
        request whose pending span was completed (in batch order). Returns finished requests."""
        finished, t = [], 0
        for seq, n in zip(batch.seqs, batch.num_new):
            seq.num_computed += n
            if seq.num_computed == len(seq.token_ids):  # else a prompt chunk: no token yet
                t += 1
                if seq.append_token(tokens[t - 1], now_ns):
                    finished.append(seq)
                    self.bm.free(seq)
                    continue
            if self.window is not None:
                self.bm.free_window(seq, self.window)
        if finished:
            self.running = [s for s in self.running if not s.done]
        return finished

    def advance(self, batch: Batch, emitting: list[Sequence]) -> None:
        """Async scheduling, first half of `postprocess`, before the tokens are on the host:
        advance the batch and reserve each emitted token's place (`emitting`, in output order),
        so the next iteration can be scheduled now. A request whose reserved token is its last
        by length leaves the running list (it is finished, and freed, by `commit`); a request an
        EOS finished in the iteration before is done and skipped (its look-ahead row is dropped)."""
        for seq, n in zip(batch.seqs, batch.num_new):
            if not seq.done:
                seq.num_computed += n
        last = False
        for row, seq in enumerate(emitting):
            if not seq.done:
                last |= seq.reserve_token(row)
        if self.window is not None:
            for seq in batch.seqs:
                if not seq.done:
                    self.bm.free_window(seq, self.window)
        if last:
            self.running = [s for s in self.running if len(s.token_ids) - s.prompt_len < s.max_new_tokens]

    def commit(self, emitting: list[Sequence], tokens: list[int], now_ns: int) -> list[Sequence]:
        """Async scheduling, second half: the reserved tokens, now read. Returns finished requests."""
        finished = []
        for seq, token in zip(emitting, tokens):
            if not seq.done:
                waiting = seq.status is Status.WAITING  # preempted by the schedule made meanwhile
                if seq.commit_token(token, now_ns):
                    finished.append(seq)
                    self.bm.free(seq)
                    if waiting:
                        self.waiting.remove(seq)
        if finished:
            self.running = [s for s in self.running if not s.done]
        return finished
