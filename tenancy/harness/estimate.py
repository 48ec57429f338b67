"""Memory a run needs, estimated before anything starts (`tenancy run`, `tenancy sweep --dry-run`).

Per tenant process: weights (parameters x dtype bytes, counted on the meta device), plus the
working set of one iteration, plus a CUDA context on a GPU. The working set is one layer's
activations of the prefill/forward (nothing is kept across layers under inference mode), the
attention scores, and for `generate` the KV cache of seq + new_tokens positions. It is an
estimate meant to refuse combinations that cannot fit, not to predict the allocator's peak.

Host memory per tenant process: the interpreter with torch and transformers imported, plus on a
CPU the weights and working set, and on a GPU the weights when they are loaded from disk (random
weights are drawn directly on the GPU).
"""
from __future__ import annotations

from typing import Any

from tenancy.harness.scenario import Scenario, Tenant
from tenancy.models import zoo

CUDA_CONTEXT_MIB = 500.0  # CUDA context + cuBLAS workspace per process (torch 2.x, CUDA 12, lazy loading)
ALLOCATOR_SLACK = 1.25  # caching-allocator rounding and fragmentation on the working set
MIB = 2**20
PROCESS_HOST_MIB = 400.0  # peak RSS of a tiny tenant process (torch 2.13 CPU, transformers), measured: 395 MiB


def tenant_mib(tenant: Tenant, device: str, params: dict[tuple[str, str], int]) -> dict[str, float]:
    """Memory of one process of `tenant` (dtype resolved); `params` caches parameter counts."""
    key = (tenant.model, tenant.size)
    if key not in params:
        params[key] = zoo.count_params(*key)
    nbytes = zoo.DTYPE_BYTES[tenant.dtype or "float32"]
    cfg = zoo.get(tenant.model).make_config(tenant.size)
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


def host_tenant_mib(tenant: Tenant, device: str, per: dict[str, float]) -> float:
    """Host memory of one process of `tenant`, given its device memory `per` (tenant_mib)."""
    if device == "cpu":
        return PROCESS_HOST_MIB + per["weights_mib"] + per["work_mib"]
    return PROCESS_HOST_MIB + (per["weights_mib"] if tenant.weights != "random" else 0.0)


def _peak(scenario: Scenario, one: dict[str, float], per_process: float) -> tuple[float, float]:
    """(solo, shared) of per-tenant figures `one`; streams tenants share one process."""
    solo = max(one[t.name] for t in scenario.distinct())
    if scenario.mode == "exclusive":
        return solo, 0.0
    shared = sum(one[t.name] for t, _ in scenario.instances())
    if scenario.mode == "streams":
        shared -= per_process * (len(scenario.instances()) - 1)
    return solo, shared


def run_mib(scenario: Scenario, params: dict[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Peak memory of a resolved scenario, on the device and on the host: the larger of its solo
    launches and its shared launch. Under `streams` the tenants are threads of one process, so they
    share one CUDA context and one interpreter.
    """
    params = {} if params is None else params
    device = scenario.device
    per = {t.name: tenant_mib(t, device, params) for t in scenario.tenants}
    solo, shared = _peak(scenario, {name: sum(v.values()) for name, v in per.items()},
                         CUDA_CONTEXT_MIB if device == "cuda" else 0.0)
    host = {t.name: host_tenant_mib(t, device, per[t.name]) for t in scenario.tenants}
    host_solo, host_shared = _peak(scenario, host, PROCESS_HOST_MIB)
    return {"solo_mib": solo, "shared_mib": shared, "peak_mib": max(solo, shared),
            "weights_mib": sum(per[t.name]["weights_mib"] for t, _ in scenario.instances()),
            "host_peak_mib": max(host_solo, host_shared)}
