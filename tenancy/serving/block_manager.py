"""KV-cache block accounting: which pool blocks each request owns.

The pool itself (one [num_blocks, block_size, kv_heads, head_dim] tensor per layer for K and
for V) lives in the model runner; here we only hand out block ids. Two policies:

- paged: blocks are allocated as tokens arrive (vLLM); running out triggers preemption.
- reserve: a request gets blocks for prompt + max_new_tokens when admitted (Orca), so it can
  never run out later, at the price of memory held for tokens that do not exist yet.
"""
from __future__ import annotations

from typing import Literal

from tenancy.serving.sequence import FREED, Sequence


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, policy: Literal["paged", "reserve"] = "paged"):
        if policy not in ("paged", "reserve"):
            raise ValueError(f"unknown kv_policy {policy!r}")
        self.num_blocks, self.block_size, self.policy = num_blocks, block_size, policy
        self.free_blocks: list[int] = list(range(num_blocks - 1, -1, -1))  # a stack: pop() = low ids first

    @property
    def num_free(self) -> int:
        return len(self.free_blocks)

    def fits_ever(self, seq: Sequence) -> bool:
        """Could this request finish if it had the whole pool to itself?"""
        return cdiv(seq.max_len, self.block_size) <= self.num_blocks

    def ensure(self, seq: Sequence, num_new: int) -> bool:
        """Give `seq` room for `num_new` more cached tokens; all-or-nothing, False if no room."""
        target = cdiv(seq.num_computed + num_new, self.block_size)
        if self.policy == "reserve":
            target = max(target, cdiv(seq.max_len, self.block_size))
        need = target - len(seq.block_table)
        if need <= 0:
            return True
        if need > len(self.free_blocks):
            return False
        free = self.free_blocks
        seq.block_table.extend(free.pop() for _ in range(need))
        return True

    def free(self, seq: Sequence) -> None:
        self.free_blocks.extend(b for b in reversed(seq.block_table) if b != FREED)
        seq.block_table = []

    def free_window(self, seq: Sequence, window: int) -> None:
        """Free the blocks no future query can see: the next query (position num_computed) attends
        to keys > num_computed - window. Their table entries become FREED, so positions still map
        to table indices."""
        table, bs = seq.block_table, self.block_size
        end = min((seq.num_computed - window + 1) // bs, len(table))  # blocks wholly before the window
        i = end - 1
        while i >= 0 and table[i] != FREED:
            self.free_blocks.append(table[i])
            table[i] = FREED
            i -= 1
