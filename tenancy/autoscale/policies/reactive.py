"""Ray Serve's autoscaler: target ongoing requests per replica, look-back average, delays."""
from __future__ import annotations

import math

from tenancy.autoscale.config import Reactive
from tenancy.autoscale.policies.base import Context, Delayed, Observation, Window


class ReactivePolicy:
    def __init__(self, cfg: Reactive, ctx: Context) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.window = Window(cfg.look_back_s)
        self.delayed = Delayed(cfg.upscale_delay_s, cfg.downscale_delay_s)

    def decide(self, obs: Observation) -> int:
        self.window.add(obs.t_s, obs.ongoing)
        want = math.ceil(self.window.mean() / self.cfg.target_ongoing_requests - 1e-9)
        want = min(max(want, self.ctx.capacity.min_replicas), self.ctx.capacity.max_replicas)
        return self.delayed(want, obs.provisioned, obs.dt_s)
