"""Target KV-cache utilisation (Dynamo's load planner): scale by used / target KV share."""
from __future__ import annotations

import math

from tenancy.autoscale.config import Kv
from tenancy.autoscale.policies.base import Context, Delayed, Observation, Window


class KvPolicy:
    def __init__(self, cfg: Kv, ctx: Context) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.window = Window(cfg.look_back_s)
        self.delayed = Delayed(cfg.upscale_delay_s, cfg.downscale_delay_s)

    def decide(self, obs: Observation) -> int:
        self.window.add(obs.t_s, obs.kv_utilization * obs.ready)  # KV in use, in replicas' worth
        want = math.ceil(self.window.mean() / self.cfg.target_kv_utilization - 1e-9)
        if obs.ongoing and not obs.ready:
            want = max(want, 1)
        want = min(max(want, self.ctx.capacity.min_replicas), self.ctx.capacity.max_replicas)
        return self.delayed(want, obs.provisioned, obs.dt_s)
