"""Knows the rate function: provisions for the highest rate until one cold start and one
decision ahead. The bound for policies that must learn the load."""
from __future__ import annotations

from tenancy.autoscale.capacity import sample
from tenancy.autoscale.config import Oracle
from tenancy.autoscale.policies.base import Context, Observation


class OraclePolicy:
    def __init__(self, cfg: Oracle, ctx: Context) -> None:
        if ctx.rate_fn is None:
            raise ValueError("the oracle policy needs a workload with a rate function (not a trace)")
        self.ctx = ctx

    def decide(self, obs: Observation) -> int:
        ahead = self.ctx.cold_start_s + self.ctx.interval_s
        return self.ctx.capacity.replicas_for(max(sample(self.ctx.rate_fn, obs.t_s, obs.t_s + ahead)))
