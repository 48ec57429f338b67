"""Device memory a run needs, estimated before anything starts (for `tenancy sweep --dry-run`).

Per tenant process: weights (parameters x dtype bytes, counted on the meta device), plus the
working set of one iteration, plus a CUDA context on a GPU. The working set is one layer's
activations of the prefill/forward (nothing is kept across layers under inference mode), the
attention scores, and for `generate` the KV cache of seq + new_tokens positions. It is an
estimate meant to refuse combinations that cannot fit, not to predict the allocator's peak.
"""
from __future__ import annotations

from typing import Any

from tenancy import models
from tenancy.scenario import Scenario, Tenant

CUDA_CONTEXT_MIB = 500.0  # CUDA context + cuBLAS workspace per process (torch 2.x, CUDA 12, lazy loading)
ALLOCATOR_SLACK = 1.25  # caching-allocator rounding and fragmentation on the working set
MIB = 2**20


def tenant_mib(tenant: Tenant, device: str, params: dict[tuple[str, str], int]) -> dict[str, float]:
    """Memory of one process of `tenant` (dtype resolved); `params` caches parameter counts."""
    key = (tenant.model, tenant.size)
    if key not in params:
        params[key] = models.count_params(*key)
    nbytes = models.DTYPE_BYTES[tenant.dtype or "float32"]
    cfg = models.get(tenant.model).make_config(tenant.size)
    hidden, layers = cfg.hidden_size, cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    inter = getattr(cfg, "intermediate_size", None) or getattr(cfg, "n_inner", None) or 4 * hidden
    b, s = tenant.batch, tenant.seq
    layer = b * s * (4 * hidden + inter) * nbytes + 3 * b * heads * s * s * nbytes  # + relative-attention terms
    work = layer + b * hidden * nbytes * s  # the hidden state carried between layers
    if tenant.task in ("generate", "serve"):  # serve: its block pool is sized by the engine; this is a floor
        work += 2 * layers * b * (s + tenant.new_tokens) * kv_heads * head_dim * nbytes
        work += b * cfg.vocab_size * 4  # last-position logits, upcast
    else:
        work += b * s * hidden * nbytes  # the output
    return {
        "weights_mib": params[key] * nbytes / MIB,
        "work_mib": work * ALLOCATOR_SLACK / MIB,
        "context_mib": CUDA_CONTEXT_MIB if device == "cuda" else 0.0,
    }


def run_mib(scenario: Scenario, params: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Peak memory of a resolved scenario: the larger of its solo launches and its shared phase.

    Under `streams` the tenants are threads of one process, so they share one context.
    """
    params = {} if params is None else params
    device = scenario.device
    per = {t.name: tenant_mib(t, device, params) for t in scenario.tenants}
    one = {name: sum(v.values()) for name, v in per.items()}
    solo = max(one[t.name] for t in scenario.distinct())
    if scenario.sharing == "exclusive":
        shared = 0.0
    else:
        shared = sum(one[t.name] for t, _ in scenario.instances())
        if scenario.sharing == "streams" and device == "cuda":
            shared -= CUDA_CONTEXT_MIB * (len(scenario.instances()) - 1)
    return {"solo_mib": solo, "shared_mib": shared, "peak_mib": max(solo, shared),
            "weights_mib": sum(per[t.name]["weights_mib"] for t, _ in scenario.instances())}
