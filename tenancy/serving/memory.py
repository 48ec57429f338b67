"""How many KV blocks a serving engine may hold: from its own budget, never from free memory.

Several serving tenants building at once (MPS, time-slicing) would each read the device's free
memory before the others allocate, and together overcommit it. So the pool is sized from what
this tenant is entitled to, in this order: `num_blocks`; `kv_cache_gb`; `kv_memory_fraction` of
the tenant's MPS pinned-memory limit (when set) minus its weights; else `kv_memory_fraction` of
the device's total memory (RAM on CPU) minus its weights. Tenants sharing a GPU without MPS
limits should set `kv_cache_gb` (or `num_blocks`) explicitly.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import torch

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_mem_limit(value: Optional[str]) -> Optional[int]:
    """An MPS pinned-memory limit ('2G', '512M', '1048576') in bytes."""
    if value is None:
        return None
    m = re.fullmatch(r"(\d+)([KMG]?)", str(value).strip())
    if not m:
        raise ValueError(f"bad memory limit {value!r}: expected e.g. 2G, 512M")
    return int(m.group(1)) * _UNITS[m.group(2)]


def device_total_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def kv_budget_bytes(total_bytes: int, weight_bytes: int, fraction: float, kv_cache_gb: Optional[float] = None,
                    mem_limit_bytes: Optional[int] = None) -> int:
    """Bytes the KV pool may take (see the module docstring for the order)."""
    if kv_cache_gb is not None:
        return int(kv_cache_gb * 2**30)
    budget = mem_limit_bytes if mem_limit_bytes is not None else total_bytes
    return int(max(0, budget - weight_bytes) * fraction)


def num_blocks_for(budget_bytes: int, bytes_per_block: int, cap: Optional[int]) -> int:
    n = budget_bytes // bytes_per_block
    if n < 1:
        raise ValueError(f"KV budget of {budget_bytes / 2**20:.1f} MiB holds no {bytes_per_block / 2**20:.2f} MiB block; "
                         "raise kv_cache_gb / kv_memory_fraction / the memory limit")
    return min(n, cap) if cap else n
