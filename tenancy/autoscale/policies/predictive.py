"""Fits the seasonal rate (a + b sin + c cos of the season) to the arrivals it has seen, and
provisions for the highest predicted rate from now until one cold start and one decision ahead,
so a replica it starts now is ready when the load arrives."""
from __future__ import annotations

import math

import numpy as np

from tenancy.autoscale.capacity import sample
from tenancy.autoscale.config import Predictive
from tenancy.autoscale.policies.base import Context, Observation


class PredictivePolicy:
    def __init__(self, cfg: Predictive, ctx: Context) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.season = cfg.season_s or ctx.season_s
        self.first_t: float | None = None
        self.last_t = 0.0
        self.n = 0
        self.xtx, self.xty = np.zeros((3, 3)), np.zeros(3)  # least squares, accumulated: O(1) a decision
        self.rate: list[float] = []

    def _x(self, t: float) -> np.ndarray:
        w = 2 * math.pi / self.season if self.season else 0.0
        return np.array([1.0, math.sin(w * t), math.cos(w * t)])

    def fitted(self):
        """The rate function fitted so far (least squares), or None before there is enough history."""
        span = self.last_t - self.first_t if self.first_t is not None else 0.0
        if self.season is None or span < max(self.cfg.min_history_s, 1e-9) or self.n < 4:
            return None
        a, b, c = np.linalg.lstsq(self.xtx, self.xty, rcond=None)[0]
        w = 2 * math.pi / self.season
        return lambda s: max(0.0, a + b * math.sin(w * s) + c * math.cos(w * s))

    def decide(self, obs: Observation) -> int:
        if obs.dt_s > 0:
            t, y = obs.t_s - obs.dt_s / 2, obs.arrivals / obs.dt_s  # the arrivals belong to the interval's middle
            x = self._x(t)
            self.xtx += np.outer(x, x)
            self.xty += x * y
            self.first_t = t if self.first_t is None else self.first_t
            self.last_t, self.n = t, self.n + 1
            self.rate = (self.rate + [y])[-max(1, int(2.0 / self.ctx.interval_s)):]
        fn = self.fitted()
        if fn is None:  # until it can fit: the rate of the last few decisions
            return self.ctx.capacity.replicas_for(sum(self.rate) / len(self.rate) if self.rate else 0.0)
        ahead = self.ctx.cold_start_s + self.ctx.interval_s
        return self.ctx.capacity.replicas_for(max(sample(fn, obs.t_s, obs.t_s + ahead)))
