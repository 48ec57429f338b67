"""The statistics every number of a run rests on: co-location metrics, intervals, verdicts.

One home for each rule, used by the run analysis and by the report alike. Definitions
(results/README.md): NL = slowdown = shared mean / solo mean of the same work, NP = 1/NL,
STP = sum NP, ANTT = mean NL, Jain fairness = (sum NP)^2 / (n sum NP^2), min/max fairness =
min NP / max NP.

Intervals. The unit of replication is a repeat (a fresh launch of the solo and shared phases):
with three or more repeats a headline figure is the mean of its per-repeat values with a
Student-t interval across repeats (for a slowdown, a ratio, both on the log scale: the geometric
mean). With fewer, the only variation to go on is within a launch,
so a moving-block bootstrap resamples time blocks of each launch (jointly for all tenants of a
shared launch, so their contention stays paired), recomputes every repeat's figure, and averages
over repeats; that interval ignores launch-to-launch variation and says so (`ci_basis`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

LEVEL = 0.95
MIN_REPEATS_FOR_T = 3
N_RESAMPLES = 2000
BEYOND = 10  # a percentile is reported only with at least this many samples beyond it


def colocation(slowdowns: Sequence[float]) -> dict[str, float]:
    """STP, ANTT, Jain fairness and min/max fairness of one set of tenant slowdowns (NL)."""
    nl = np.asarray(slowdowns, dtype=float)
    return {name: float(v[0]) for name, v in colocation_arrays(nl[:, None]).items()}


def colocation_arrays(nl: np.ndarray) -> dict[str, np.ndarray]:
    """The same, vectorised over columns: `nl` is [tenants, replicates]."""
    p = 1.0 / nl
    return {"stp": p.sum(axis=0), "antt": nl.mean(axis=0),
            "fairness": p.sum(axis=0) ** 2 / (len(p) * (p ** 2).sum(axis=0)),
            "min_max_fairness": p.min(axis=0) / p.max(axis=0)}


def t_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of independent values (NaN below 2)."""
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(sps.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def ratio_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(geometric mean, low, high) of ratios such as slowdowns: the t interval of their logarithms,
    mapped back. A ratio's spread is multiplicative, and its interval then never crosses 0."""
    x = [v for v in values if v is not None and np.isfinite(v) and v > 0]
    mean, lo, hi = t_interval(np.log(x), level) if x else (math.nan, math.nan, math.nan)
    return math.exp(mean), math.exp(lo), math.exp(hi)


RANGES = {"stp": (0.0, math.inf), "antt": (0.0, math.inf), "fairness": (0.0, 1.0), "min_max_fairness": (0.0, 1.0)}


def interval(metric: str, values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(point, low, high) across repeats: a slowdown's geometric mean with its log-scale interval;
    a co-location metric's mean with its t interval, cut to the metric's range (STP and ANTT are
    positive, fairness at most 1)."""
    if metric == "slowdown":
        return ratio_interval(values, level)
    mean, lo, hi = t_interval(values, level)
    bottom, top = RANGES[metric]
    return mean, max(lo, bottom) if np.isfinite(lo) else lo, min(hi, top) if np.isfinite(hi) else hi


@dataclass
class Launch:
    """The in-window samples of one launch, per tenant: sample start times and latencies."""

    starts: list[np.ndarray]  # per tenant, ns (any common clock)
    values: list[np.ndarray]  # per tenant, the latencies


def block_length_ns(launch: Launch) -> tuple[float, float, int]:
    """(window start, window length, blocks): about sqrt(n) samples of the sparsest tenant per
    block, at least 2 blocks. Longer than the textbook n^(1/3) because latency series are
    autocorrelated: on simulated AR(1) series with rho 0.8 and n >= 100 the 95% interval covered
    the truth 85-91% of the time with sqrt(n) blocks, 76-84% with n^(1/3) (tests/test_stats.py)."""
    lo = min(float(s.min()) for s in launch.starts)
    hi = max(float(s.max()) for s in launch.starts)
    n = min(len(s) for s in launch.starts)
    per_block = max(1, round(n ** 0.5))
    blocks = max(2, n // per_block)
    return lo, max(hi - lo, 1.0), blocks


def block_means(launch: Launch, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """[tenants, n_resamples] means under a moving-block bootstrap in time: each replicate draws
    the window's number of blocks, each a time interval of fixed length starting anywhere in the
    window (wrapping around), and takes every tenant's samples that start inside the drawn blocks."""
    lo, span, blocks = block_length_ns(launch)
    length = span / blocks
    starts = rng.uniform(0.0, span, size=(n_resamples, blocks))
    out = np.empty((len(launch.values), n_resamples))
    for i, (t, v) in enumerate(zip(launch.starts, launch.values)):
        order = np.argsort(t)
        pos = (t[order] - lo).astype(float)
        cum = np.concatenate([[0.0], np.cumsum(v[order].astype(float))])
        total_v, total_n = cum[-1], len(pos)

        def window_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ia, ib = np.searchsorted(pos, a, "left"), np.searchsorted(pos, b, "left")
            return cum[ib] - cum[ia], (ib - ia).astype(float)

        end = starts + length
        s1, c1 = window_sum(starts, np.minimum(end, span + 1))
        wrap = np.clip(end - span - 1, 0.0, None)  # the part of a block past the end wraps to the start
        s2, c2 = window_sum(np.zeros_like(wrap), wrap)
        sums, counts = (s1 + s2).sum(axis=1), (c1 + c2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i] = np.where(counts > 0, sums / counts, total_v / total_n)
    return out


def bootstrap_repeats(repeats: Sequence[tuple[Launch, Sequence[Launch], Sequence[int]]],
                      statistics: Mapping[str, Callable[[np.ndarray], np.ndarray]], level: float = LEVEL,
                      n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile intervals of statistics of slowdowns, each averaged over repeats, all from the
    same resamples.

    Each repeat is (shared launch, solo launches, solo_of) where tenant i of the shared launch has
    its baseline in solo launch solo_of[i] (tenant 0 of it). A statistic maps [tenants, R]
    slowdowns to [R] values. Shared and solo launches are resampled independently (a slowdown is
    a ratio of two launches), the tenants of one launch jointly.
    """
    rng = np.random.default_rng(seed)
    acc = {name: np.zeros(n_resamples) for name in statistics}
    for shared, solos, solo_of in repeats:
        sm = block_means(shared, rng, n_resamples)
        base = np.stack([block_means(solos[j], rng, n_resamples)[0] for j in solo_of])
        for name, fn in statistics.items():
            acc[name] += fn(sm / base)
    out = {}
    for name, values in acc.items():
        lo, hi = np.nanpercentile(values / len(repeats), [50 * (1 - level), 50 * (1 + level)])
        out[name] = (float(lo), float(hi))
    return out


def noise_floor(solo_means: Sequence[float]) -> float:
    """The largest relative difference between two solo launches of the same work (an A/A
    comparison the run makes for free): |ratio - 1| of the largest over the smallest mean.
    0 with fewer than two launches."""
    x = [m for m in solo_means if m is not None and np.isfinite(m) and m > 0]
    return float(max(x) / min(x) - 1.0) if len(x) >= 2 else 0.0


def verdict(point: float, low: float, high: float, floor: float = 0.0) -> str:
    """`slower`, `faster` or `indistinguishable`: an effect counts only when its interval
    excludes 1 and the point estimate lies beyond the noise floor."""
    if not all(np.isfinite([point, low, high])):
        return "indistinguishable"
    if low > 1.0 and point - 1.0 > floor:
        return "slower"
    if high < 1.0 and 1.0 - point > floor:
        return "faster"
    return "indistinguishable"


def min_samples(q: float) -> int:
    """Samples needed to report the q-th percentile (0-100) with BEYOND samples beyond it."""
    return math.ceil(BEYOND / (1 - q / 100) - 1e-9)


def percentiles(x: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Each percentile of x, or NaN where too few samples lie beyond it."""
    x = np.asarray(x, dtype=float)
    return [float(np.percentile(x, q)) if len(x) >= min_samples(q) else math.nan for q in qs]
