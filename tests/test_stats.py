"""The statistics on synthetic samples (no timing): intervals, the block bootstrap, verdicts,
noise floors, percentile minimums and the co-location formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from tenancy.analysis import stats


def test_colocation_formulas_match_their_definitions():
    nl = [1.25, 2.0]
    m = stats.colocation(nl)
    np_ = [0.8, 0.5]
    assert m["stp"] == pytest.approx(1.3)
    assert m["antt"] == pytest.approx(1.625)
    assert m["fairness"] == pytest.approx(sum(np_) ** 2 / (2 * sum(p * p for p in np_)))
    assert m["min_max_fairness"] == pytest.approx(0.5 / 0.8)
    assert stats.colocation([1, 1, 1]) == {"stp": 3.0, "antt": 1.0, "fairness": 1.0, "min_max_fairness": 1.0}


def test_t_interval_across_repeats():
    x = [1.1, 1.3, 1.2, 1.25]
    mean, lo, hi = stats.t_interval(x)
    half = sps.t.ppf(0.975, 3) * np.std(x, ddof=1) / 2
    assert (mean, lo, hi) == pytest.approx((np.mean(x), np.mean(x) - half, np.mean(x) + half))
    assert all(math.isnan(v) for v in stats.t_interval([1.2])[1:])


def _ar1(rng, n, rho, mean=1.0, scale=0.05):
    e = np.zeros(n)
    x = 0.0
    for i in range(n):
        x = rho * x + rng.normal() * math.sqrt(1 - rho ** 2)
        e[i] = x
    return stats.Launch([np.arange(n) * 1e6], [mean * (1 + scale * e)])


@pytest.mark.parametrize("rho,low", [(0.0, 0.88), (0.8, 0.78)])
def test_block_bootstrap_covers_the_truth_on_autocorrelated_series(rho, low):
    """Two launches of the same work (true slowdown 1) with AR(1) noise: the interval covers 1
    about as often as it says, also when neighbouring samples are correlated."""
    rng = np.random.default_rng(7)
    trials, covered = 120, 0
    for i in range(trials):
        shared, solo = _ar1(rng, 200, rho), _ar1(rng, 200, rho)
        lo, hi = stats.bootstrap_repeats([(shared, [solo], [0])], {"s": lambda nl: nl[0]}, n_resamples=300,
                                         seed=i)["s"]
        covered += lo <= 1.0 <= hi
    assert low <= covered / trials <= 1.0


def test_block_bootstrap_resamples_the_tenants_of_a_launch_jointly():
    """Two tenants whose latencies rise and fall together in time (common contention): their
    ratio is steady, and a joint resampling keeps it so; resampling them apart would not."""
    t = np.arange(400) * 1e6
    wave = 1 + 0.3 * np.sin(np.arange(400) / 15)
    shared = stats.Launch([t, t], [2 * wave, 3 * wave])
    solo_a, solo_b = stats.Launch([t], [np.full(400, 1.0)]), stats.Launch([t], [np.full(400, 1.5)])
    ci = stats.bootstrap_repeats([(shared, [solo_a, solo_b], [0, 1])],
                                 {"ratio": lambda nl: nl[0] / nl[1], "level": lambda nl: nl[0]}, n_resamples=500)
    lo, hi = ci["ratio"]
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    lo2, hi2 = ci["level"]
    assert hi2 - lo2 > 0.05  # the level itself is uncertain


def test_block_bootstrap_averages_over_repeats():
    t = np.arange(100) * 1e6
    flat = lambda v: stats.Launch([t], [np.full(100, v)])  # noqa: E731
    reps = [(flat(2.0), [flat(1.0)], [0]), (flat(3.0), [flat(1.0)], [0])]
    assert stats.bootstrap_repeats(reps, {"s": lambda nl: nl[0]}, n_resamples=50)["s"] == pytest.approx((2.5, 2.5))


def test_noise_floor_is_the_largest_solo_to_solo_difference():
    assert stats.noise_floor([10.0, 11.0, 10.5]) == pytest.approx(0.1)
    assert stats.noise_floor([10.0]) == 0.0


@pytest.mark.parametrize("point,lo,hi,floor,expected", [
    (1.30, 1.20, 1.40, 0.05, "slower"),
    (0.80, 0.70, 0.90, 0.05, "faster"),
    (1.05, 0.98, 1.12, 0.00, "indistinguishable"),   # the interval includes 1
    (1.04, 1.01, 1.07, 0.10, "indistinguishable"),   # beyond the interval, inside the noise floor
    (1.30, math.nan, math.nan, 0.0, "indistinguishable"),
])
def test_verdicts(point, lo, hi, floor, expected):
    assert stats.verdict(point, lo, hi, floor) == expected


def test_percentiles_need_ten_samples_beyond_them():
    assert (stats.min_samples(50), stats.min_samples(90), stats.min_samples(99)) == (20, 100, 1000)
    x = np.arange(999, dtype=float)
    p50, p90, p99 = stats.percentiles(x, (50, 90, 99))
    assert p50 == pytest.approx(499) and p90 == pytest.approx(np.percentile(x, 90)) and math.isnan(p99)
    assert not math.isnan(stats.percentiles(np.arange(1000.0), (99,))[0])
    assert all(math.isnan(v) for v in stats.percentiles(np.arange(19.0), (50, 90, 99)))


def test_slowdown_intervals_are_on_the_log_scale_and_metrics_stay_in_range():
    """Widely spread slowdowns: a plain t interval would go below 0; the log-scale one cannot,
    and it is symmetric in ratio terms. STP and fairness intervals are cut to their range."""
    x = [0.5, 1.0, 4.0]
    g, lo, hi = stats.interval("slowdown", x)
    assert g == pytest.approx(np.exp(np.mean(np.log(x)))) and lo > 0 and g / lo == pytest.approx(hi / g)
    assert stats.t_interval(x)[1] < 0
    assert stats.interval("stp", [0.1, 1.9, 0.2])[1] == 0.0
    assert stats.interval("fairness", [0.7, 1.0, 0.99])[2] == 1.0
