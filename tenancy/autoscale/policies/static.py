"""A fixed fleet: N replicas, or enough for the rate function's peak or mean."""
from __future__ import annotations

from tenancy.autoscale.capacity import sample
from tenancy.autoscale.config import Static
from tenancy.autoscale.policies.base import Context, Observation


class StaticPolicy:
    def __init__(self, cfg: Static, ctx: Context) -> None:
        if isinstance(cfg.replicas, int):
            self.n = cfg.replicas
        else:
            if ctx.rate_fn is None or ctx.duration_s is None:
                raise ValueError(f"static {cfg.replicas} needs a workload with a rate function (not a trace)")
            rates = sample(ctx.rate_fn, 0.0, ctx.duration_s)
            rate = max(rates) if cfg.replicas == "peak" else sum(rates) / len(rates)
            self.n = ctx.capacity.replicas_for(rate)

    def decide(self, obs: Observation) -> int:
        return self.n
