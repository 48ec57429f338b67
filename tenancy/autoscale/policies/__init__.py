"""Scaling policies: each a class with `decide(Observation) -> replicas`; adding one is one file
plus its config model (config.py) and a line here."""
from __future__ import annotations

from typing import Protocol

from tenancy.autoscale.policies.base import Context, Observation


class Policy(Protocol):
    def decide(self, obs: Observation) -> int: ...


def make(cfg, ctx: Context) -> Policy:
    from tenancy.autoscale.policies.kv import KvPolicy
    from tenancy.autoscale.policies.oracle import OraclePolicy
    from tenancy.autoscale.policies.predictive import PredictivePolicy
    from tenancy.autoscale.policies.reactive import ReactivePolicy
    from tenancy.autoscale.policies.static import StaticPolicy

    kinds = {"static": StaticPolicy, "reactive": ReactivePolicy, "kv": KvPolicy,
             "predictive": PredictivePolicy, "oracle": OraclePolicy}
    return kinds[cfg.policy](cfg, ctx)


__all__ = ["Context", "Observation", "Policy", "make"]
