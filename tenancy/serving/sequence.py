"""A request as the engine sees it: its tokens, its sampling parameters, its KV blocks and its
timestamps.

The engine tracks one number to know what to compute next: `num_computed`, the tokens whose
K/V are already in the cache. Tokens `[num_computed, num_tokens)` are pending: the whole prompt
for a new request, one token for a decoding one, prompt + generated tokens after a preemption
(recomputation). A token is sampled whenever an iteration reaches the end of the pending span.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

FREED = -1  # a block_table entry whose block slid out of the attention window and was freed
PENDING = -1  # a token_ids entry sampled on the device, not yet read (async scheduling)


class Status(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class SamplingParams:
    """Per request, so that a request's output never depends on its neighbours in the batch.
    temperature 0 is greedy; top_k 0 and top_p 1 disable those filters; seed None draws the
    request's generator seed from the engine seed and the request id."""

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: Optional[int] = None
    ignore_eos: bool = False


@dataclass(eq=False)
class Sequence:
    id: int
    prompt: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    arrival_ns: int = 0
    eos_ids: frozenset[int] = frozenset()  # every EOS id of the model's config

    token_ids: list[int] = field(init=False)
    status: Status = Status.WAITING
    num_computed: int = 0
    block_table: list[int] = field(default_factory=list)
    admitted_ns: Optional[int] = None  # first admission (queueing delay ends here)
    admit_order: int = -1  # rank of the first admission: preemption takes the newest first
    token_ns: list[int] = field(default_factory=list)  # when each output token was sampled
    finish_ns: Optional[int] = None
    error: Optional[str] = None
    num_preemptions: int = 0
    generator: object = None  # the request's own torch.Generator, made when it first samples
    out_row: int = -1  # async scheduling: the row of its PENDING token in that iteration's output

    def __post_init__(self) -> None:
        self.token_ids = list(self.prompt)

    @property
    def max_new_tokens(self) -> int:
        return self.params.max_tokens

    @property
    def prompt_len(self) -> int:
        return len(self.prompt)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output(self) -> int:
        return len(self.token_ids) - len(self.prompt)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt):]

    @property
    def max_len(self) -> int:
        """Tokens this request may ever hold in the KV cache (Orca reserves this much)."""
        return self.prompt_len + self.max_new_tokens

    @property
    def done(self) -> bool:
        return self.status in (Status.FINISHED, Status.FAILED)

    def append_token(self, token: int, now_ns: int) -> bool:
        """Record a sampled token; returns True when the request has finished."""
        tokens = self.token_ids  # hot path (every request, every iteration): no properties
        tokens.append(token)
        self.token_ns.append(now_ns)
        params = self.params
        if len(tokens) - len(self.prompt) >= params.max_tokens or (token in self.eos_ids and not params.ignore_eos):
            self.status, self.finish_ns = Status.FINISHED, now_ns
            return True
        return False

    def reserve_token(self, row: int) -> bool:
        """Async scheduling: the token sampled at output `row` is still on the device; hold its
        place (the next iteration reads it there). True if it will be the last, by length."""
        self.token_ids.append(PENDING)
        self.out_row = row
        return len(self.token_ids) - len(self.prompt) >= self.params.max_tokens

    def commit_token(self, token: int, now_ns: int) -> bool:
        """The reserved token, now on the host; returns True when the request has finished."""
        tokens = self.token_ids
        tokens[-1] = token  # the placeholder is the last token: one iteration in flight at most
        self.token_ns.append(now_ns)
        params = self.params
        if len(self.token_ns) >= params.max_tokens or (token in self.eos_ids and not params.ignore_eos):
            self.status, self.finish_ns = Status.FINISHED, now_ns
            return True
        return False

    def fail(self, error: str, now_ns: int) -> None:
        self.status, self.error, self.finish_ns = Status.FAILED, error, now_ns
