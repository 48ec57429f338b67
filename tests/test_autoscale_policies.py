"""Autoscaling policy logic, capacity and the simulator, on synthetic inputs (no processes, no timing)."""
from __future__ import annotations

import math

import pytest

from tenancy.autoscale.capacity import Capacity, rate_function
from tenancy.autoscale.config import Kv, Oracle, Predictive, Reactive, Static
from tenancy.autoscale.metrics import summarize
from tenancy.autoscale.policies import make
from tenancy.autoscale.policies.base import Context, Delayed, Observation
from tenancy.autoscale.simulate import ServiceModel, simulate
from tenancy.serving.config import SLOs, WorkloadConfig

CAP = Capacity((10.0, 18.0, 24.0), min_replicas=1, max_replicas=5, target_utilization=1.0)


def obs(t, ready=1, provisioned=None, ongoing=0, arrivals=0, kv=0.0, dt=0.5):
    return Observation(t, dt, ready, ready if provisioned is None else provisioned, ongoing, arrivals, kv)


def ctx(rate_fn=None, cold=2.0, duration=20.0, season=None, cap=CAP):
    return Context(cap, cold, 0.5, rate_fn, duration, season)


def test_capacity_is_measured_then_extrapolated_by_the_last_step():
    assert [CAP(n) for n in range(6)] == [0.0, 10.0, 18.0, 24.0, 30.0, 36.0]
    assert Capacity((7.0,), max_replicas=1000)(1000) == pytest.approx(7000.0)  # one measured count: linear
    assert CAP.replicas_for(0) == 1 and CAP.replicas_for(18) == 2 and CAP.replicas_for(18.1) == 3
    assert CAP.replicas_for(1e6) == 5  # never above max_replicas
    half = Capacity((10.0, 18.0), 1, 4, target_utilization=0.5)
    assert half.usable(2) == 9.0 and half.replicas_for(9.5) == 3


def test_rate_function_follows_the_workload():
    fn = rate_function(WorkloadConfig(arrival="sinusoidal", rate=10, amplitude=0.5, period_s=8))
    assert fn(0) == pytest.approx(10) and fn(2) == pytest.approx(15) and fn(6) == pytest.approx(5)
    assert rate_function(WorkloadConfig(arrival="poisson", rate=3))(99) == 3
    assert rate_function(WorkloadConfig(arrival="closed")) is None


def test_static_sizes_for_peak_mean_or_a_count():
    fn = lambda t: 15 + 8 * math.sin(2 * math.pi * t / 20)  # noqa: E731 - peak 23, mean 15
    assert make(Static(replicas="peak"), ctx(fn)).decide(obs(1)) == 3
    assert make(Static(replicas="mean"), ctx(fn)).decide(obs(1)) == 2
    assert make(Static(replicas=4), ctx()).decide(obs(1, ongoing=1000)) == 4
    with pytest.raises(ValueError, match="rate function"):
        make(Static(replicas="peak"), ctx(None))


def test_delays_act_only_on_a_wish_that_persists():
    d = Delayed(up_s=1.0, down_s=2.0)
    assert d(3, 1, 0.5) == 1 and d(3, 1, 0.5) == 3  # up after 1 s of asking
    assert d(1, 3, 0.5) == 3 and d(5, 3, 0.5) == 3  # direction changed: the count restarts
    assert d(1, 3, 0.5) == 3 and d(1, 3, 0.5) == 3 and d(1, 3, 0.5) == 3 and d(1, 3, 0.5) == 1


def test_reactive_follows_ongoing_requests_per_replica_with_look_back_and_delays():
    p = make(Reactive(target_ongoing_requests=2, upscale_delay_s=1, downscale_delay_s=2, look_back_s=1), ctx())
    assert p.decide(obs(0.5, provisioned=1, ongoing=6)) == 1  # wants 3, has not waited yet
    assert p.decide(obs(1.0, provisioned=1, ongoing=6)) == 3
    # one quiet decision inside the 1 s look-back: mean ongoing (6 + 0) / 2 = 3 -> 2 replicas, a downscale wish
    assert p.decide(obs(1.5, provisioned=3, ongoing=0)) == 3
    decisions = [p.decide(obs(t, provisioned=3, ongoing=0)) for t in (2.0, 2.5, 3.0)]
    assert decisions == [3, 3, 1]  # after 2 s of wanting fewer: down to min_replicas
    assert make(Reactive(target_ongoing_requests=1, upscale_delay_s=0), ctx()).decide(obs(0.5, ongoing=99)) == 5


def test_kv_scales_by_used_kv_over_the_target():
    p = make(Kv(target_kv_utilization=0.5, upscale_delay_s=0, downscale_delay_s=0, look_back_s=0.1), ctx())
    assert p.decide(obs(0.5, ready=2, kv=0.9)) == 4  # 1.8 replicas' worth of KV at 50% each
    assert p.decide(obs(1.0, ready=4, provisioned=4, kv=0.2)) == 2
    assert p.decide(obs(1.5, ready=2, kv=0.0)) == 1


def test_predictive_fits_the_season_and_provisions_one_cold_start_ahead():
    season, true = 20.0, (lambda t: 12 + 10 * math.sin(2 * math.pi * t / 20))  # noqa: E731
    p = make(Predictive(season_s=season, min_history_s=5), ctx(cold=3.0))
    for k in range(1, 41):  # 20 s of exact arrivals, one decision every 0.5 s
        t = k * 0.5
        p.decide(obs(t, arrivals=true(t - 0.25) * 0.5))
    fn = p.fitted()
    assert all(abs(fn(t) - true(t)) < 0.2 for t in (21, 25, 30, 33))
    # at t=20 the load rises to its peak (22/s at t=25): 3 s ahead + one interval sees ~21/s -> 3 replicas,
    # while the rate now (12/s) needs only 2
    assert p.decide(obs(20.5, arrivals=true(20.25) * 0.5)) == 3 and CAP.replicas_for(true(20.5)) == 2


def test_predictive_uses_the_recent_rate_before_it_can_fit():
    p = make(Predictive(season_s=60, min_history_s=10), ctx())
    assert p.decide(obs(0.5, arrivals=10)) == 3  # 20/s observed, nothing to fit yet


def test_oracle_provisions_for_the_highest_rate_until_a_cold_start_ahead():
    step = lambda t: 5.0 if t < 10 else 20.0  # noqa: E731
    p = make(Oracle(), ctx(step, cold=2.0))
    assert p.decide(obs(7.0)) == 1  # 7 + 2 + 0.5 < 10
    assert p.decide(obs(8.0)) == 3  # the step is inside 8 + 2.5: start now to be ready
    with pytest.raises(ValueError):
        make(Oracle(), ctx(None))


def _model(cap, cold=0.0, e2e0=0.5):
    return ServiceModel(cap, ttft0_s=0.1, e2e0_s=e2e0, cold_start_s=cold)


def test_simulator_matches_a_hand_computed_overloaded_queue():
    """lambda = 2/s on one replica of 1/s: the fluid queue grows 1 request/s, and a request
    arriving at time s waits s seconds, so the mean over the step (t-1, t] waits t - 0.5 s."""
    cap = Capacity((1.0,), 1, 1, 1.0)
    ticks, reqs = simulate(Static(replicas=1), ctx(lambda t: 2.0, cap=cap, duration=10), _model(cap), 10, 1.0)
    assert ticks["queue"].tolist() == pytest.approx([float(k) for k in range(1, 11)])
    assert reqs["e2e_ms"].tolist() == pytest.approx([(0.5 + k - 0.5) * 1e3 for k in range(1, 11)])
    assert reqs["weight"].sum() == pytest.approx(20.0)
    s = summarize("x", ticks, reqs, cap.usable, lambda t: 2.0, 10, SLOs(e2e_ms=2600), 1.0)
    assert s["efficiency"] == pytest.approx(1.0) and s["replica_seconds"] == pytest.approx(10)
    assert s["time_above_slo"] == pytest.approx(0.8)  # steps ending at 3..10 s wait more than 2.1 s
    assert s["slo_attainment"] == pytest.approx(0.2) and s["goodput"] == pytest.approx(0.4)


def test_simulator_underloaded_fleet_has_no_queue_and_idles():
    cap = Capacity((4.0, 8.0), 1, 2, 1.0)
    ticks, reqs = simulate(Static(replicas=2), ctx(lambda t: 2.0, cap=cap, duration=6), _model(cap), 6, 0.5)
    assert ticks["queue"].max() == 0 and reqs["e2e_ms"].tolist() == pytest.approx([500.0] * 12)
    s = summarize("x", ticks, reqs, cap.usable, lambda t: 2.0, 6, SLOs(e2e_ms=600), 5.0)
    assert s["efficiency"] == pytest.approx(0.25) and s["time_above_slo"] == 0 and s["slo_attainment"] == 1


def test_simulated_cold_start_delays_capacity_and_the_oracle_starts_early():
    cap = Capacity((2.0,), 1, 4, 1.0)
    step = lambda t: 1.0 if t < 5 else 5.0  # noqa: E731
    c = ctx(step, cold=2.0, cap=cap, duration=12)
    late, _ = simulate(Reactive(target_ongoing_requests=0.5, upscale_delay_s=0), c, _model(cap, cold=2.0), 12, 0.5)
    early, _ = simulate(Oracle(), c, _model(cap, cold=2.0), 12, 0.5)
    assert early.loc[early["t_s"] == 5.0, "ready"].item() == 3  # ready when the step arrives
    assert late.loc[late["t_s"] == 5.0, "ready"].item() == 1 and late["queue"].max() > early["queue"].max() == 0
