"""The scenario's `autoscale:` block (pydantic), and the check that a scenario can be scaled.

It lives here, beside the autoscaler; tenancy/harness/scenario.py types its `autoscale:` field with
`AutoscaleConfig` and calls `check_scenario`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, model_validator

from tenancy.core.validation import Closed, Strict


class Static(Closed):
    """A fixed count: N, or sized from the rate function for its peak or its mean."""

    policy: Literal["static"] = "static"
    replicas: Union[int, Literal["peak", "mean"]] = "peak"

    @property
    def label(self) -> str:
        return f"static-{self.replicas}"


class Reactive(Closed):
    """Ray Serve's rule: replicas = ongoing requests (averaged over `look_back_s`) over the
    target per replica, applied once the wish has lasted the upscale / downscale delay."""

    policy: Literal["reactive"] = "reactive"
    target_ongoing_requests: float = Field(2.0, gt=0)
    upscale_delay_s: float = Field(1.0, ge=0)
    downscale_delay_s: float = Field(10.0, ge=0)
    look_back_s: float = Field(2.0, gt=0)
    label: str = "reactive"


class Kv(Closed):
    """Target KV-cache utilisation (NVIDIA Dynamo's load planner), with the same delays."""

    policy: Literal["kv"] = "kv"
    target_kv_utilization: float = Field(0.5, gt=0, le=1)
    upscale_delay_s: float = Field(1.0, ge=0)
    downscale_delay_s: float = Field(10.0, ge=0)
    look_back_s: float = Field(2.0, gt=0)
    label: str = "kv"


class Predictive(Closed):
    """Fits rate = a + b sin + c cos of the season to what it observed; provisions for the
    highest predicted rate until one cold start (plus a decision interval) ahead."""

    policy: Literal["predictive"] = "predictive"
    season_s: Optional[float] = Field(None, gt=0, description="default: the workload's period_s")
    min_history_s: float = Field(5.0, ge=0, description="before this, provision for the observed rate")
    label: str = "predictive"


class Oracle(Closed):
    """Knows the workload's rate function: the bound the others are measured against."""

    policy: Literal["oracle"] = "oracle"
    label: str = "oracle"


PolicyConfig = Annotated[Union[Static, Reactive, Kv, Predictive, Oracle], Field(discriminator="policy")]


class Calibration(Strict):
    seconds: float = Field(4.0, gt=0, description="closed-loop load per replica count")
    concurrency_per_replica: int = Field(8, ge=1)
    max_replicas: Optional[int] = Field(None, ge=1, description="default: max_replicas")


class AutoscaleConfig(Strict):
    policies: list[PolicyConfig] = Field(min_length=1)
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(4, ge=1)
    decision_interval_s: float = Field(0.5, gt=0)
    router: Literal["jsq", "round_robin"] = "jsq"
    target_utilization: float = Field(0.8, gt=0, le=1, description="share of capacity that rate-based "
                                      "policies (static peak/mean, predictive, oracle) provision to")
    slo_window_s: float = Field(5.0, gt=0, description="sliding window of the p90 latency")
    replica: Literal["engine", "sleep"] = Field("engine", description="sleep: a replica that only waits "
                                                "(service_s, slots): tests the fleet without a model")
    sleep_service_s: float = Field(0.2, gt=0)
    sleep_slots: int = Field(4, ge=1)
    capacity_rps: Optional[list[float]] = Field(None, min_length=1, description="requests/s for 1, 2, ... "
                                                "replicas; measured by calibration when absent")
    base_latency_s: Optional[float] = Field(None, gt=0, description="E2E at low load (simulation); measured")
    base_ttft_s: Optional[float] = Field(None, gt=0, description="TTFT at low load (simulation); measured")
    cold_start_s: Optional[float] = Field(None, ge=0, description="spawn+load+warm-up; measured")
    calibration: Calibration = Field(default_factory=Calibration)

    @model_validator(mode="after")
    def _bounds(self):
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) < min_replicas ({self.min_replicas})")
        labels = [p.label for p in self.policies]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"policy labels must be unique (set `label:`); repeated: {', '.join(dup)}")
        for p in self.policies:
            if isinstance(p, Static) and isinstance(p.replicas, int) and not (
                    self.min_replicas <= p.replicas <= self.max_replicas):
                raise ValueError(f"static replicas {p.replicas} outside [min_replicas, max_replicas]")
        return self


def check_scenario(scenario) -> AutoscaleConfig:
    """A scaled scenario has one serving tenant with an open-loop workload (the fleet replicates
    that tenant); returns its autoscale block."""
    cfg = scenario.autoscale
    if len(scenario.tenants) != 1 or scenario.tenants[0].task != "serve" or scenario.tenants[0].copies != 1:
        raise ValueError("an autoscale scenario has exactly one tenant, with task: serve and copies: 1 "
                         "(the fleet replicates it)")
    workload = scenario.tenants[0].serving.workload
    arrival = workload.arrival
    if arrival in ("closed", "all_at_once") and not workload.trace:
        raise ValueError(f"autoscaling needs an open-loop workload (poisson, gamma, sinusoidal or a trace), not {arrival}")
    return cfg
