"""The analysis on synthetic samples (no processes, no timing): window rules, repeats as the
unit, intervals and their basis, verdicts, `incomplete`, warnings."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tenancy.analysis import slowdown, stats, window
from tenancy.harness.runner import phase_orders

MS = 1_000_000


def launch(phase: str, repeat: int, tenants: dict[str, float], n: int = 40, t0: int = 0, task: str = "forward",
           offsets: dict[str, int] | None = None, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """One launch: each tenant runs n back-to-back iterations of the given mean latency (ms)."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, mean in tenants.items():
        lat = mean * (1 + noise * rng.standard_normal(n))
        start = t0 + (offsets or {}).get(name, 0)
        ends = start + np.cumsum(lat * MS).astype(np.int64)
        starts = np.concatenate([[start], ends[:-1]])
        tk = task if name != "llm" else "serve"
        for i in range(n):
            rows.append({"phase": phase, "repeat": repeat, "tenant": name, "copy": 0, "iteration": i,
                         "start_ns": int(starts[i]), "end_ns": int(ends[i]), "latency_ms": float(lat[i]),
                         "host_ms": float(lat[i]),
                         "prefill_ms": math.nan, "decode_ms_per_token": math.nan, "extra": False,
                         "model": "bert-base", "task": tk, "batch": 8, "seq": 128, "new_tokens": 32,
                         "dtype": "float32", "size": "tiny", "config": f"cfg-{name}",
                         "sharing": "timeslice" if phase == "shared" else "exclusive", "device": "cpu"})
    return pd.DataFrame(rows)


def run(repeat_slowdowns: list[dict[str, float]], solo: dict[str, float] | None = None, **kw) -> pd.DataFrame:
    """A run of several repeats: solo launches at `solo` ms, shared at solo x the repeat's slowdown."""
    solo = solo or {"a": 2.0, "b": 5.0}
    frames = []
    for r, sd in enumerate(repeat_slowdowns):
        t = r * 10_000 * MS
        for i, (name, base) in enumerate(solo.items()):
            frames.append(window.mark_window(launch("solo", r, {name: base}, t0=t, seed=10 * r + i, **kw)))
        frames.append(window.mark_window(launch("shared", r, {k: solo[k] * sd[k] for k in solo}, t0=t + 5000 * MS,
                                                  seed=10 * r + 9, **kw)))
    return pd.concat(frames, ignore_index=True)


# --- windows ---------------------------------------------------------------------------------

def test_window_is_all_tenants_running_with_the_late_starter_tolerated():
    """The fast tenant keeps running past the slow one's end: those samples are out, and so is its
    first one, 30% of which ran before the slow tenant started."""
    fast = launch("shared", 0, {"a": 1.0}, n=250)
    slow = launch("shared", 0, {"b": 10.0}, n=20, offsets={"b": 300_000})
    df = window.mark_window(pd.concat([fast, slow], ignore_index=True))
    a, b = df[df.tenant == "a"], df[df.tenant == "b"]
    assert b["in_window"].all()
    assert not a["in_window"].iloc[0] and a["in_window"].iloc[1:200].all()
    assert not a.loc[a["start_ns"] >= b["end_ns"].max(), "in_window"].any()
    assert window.overlap(df)[("b", 0)] == 1.0


def test_window_closes_where_the_launcher_saw_a_tenant_stop():
    df = launch("shared", 0, {"a": 1.0}, n=100)  # the killed neighbour's samples were lost with it
    closed = window.mark_window(df, close_ns=30 * MS)
    assert closed["in_window"].sum() == 30
    assert (closed.loc[closed["in_window"], "end_ns"] <= 30 * MS).all()


def test_a_sample_straddling_an_early_close_is_out_even_when_most_of_it_is_inside():
    """Past a stopped tenant's close the survivor runs alone: a sample that ends a little after
    it (here 5% of its length) is partly solo, so it is cut, although 95% of it lies inside."""
    df = launch("shared", 0, {"a": 1.0}, n=100)
    first = df.sort_values("start_ns").iloc[30]
    close = int(first["start_ns"] + 0.95 * (first["end_ns"] - first["start_ns"]))
    closed = window.mark_window(df, close_ns=close)
    assert not closed.loc[first.name, "in_window"]
    assert closed["in_window"].sum() == 30 and (closed.loc[closed["in_window"], "end_ns"] <= close).all()


def test_open_loop_requests_count_when_they_arrive_inside_the_window():
    """A request that arrives inside the window counts however long it takes (even past the
    close); one that arrived before the window opened counts only if 90% of it lies inside."""
    enc = launch("shared", 0, {"a": 1.0}, n=50, offsets={"a": 10 * MS})  # runs 10..60 ms
    req = launch("shared", 0, {"llm": 1.0}, n=3)
    req[["start_ns", "end_ns", "latency_ms"]] = [[0, 100 * MS, 100.0],   # arrives before the open
                                                 [20 * MS, 200 * MS, 180.0],  # arrives inside, ends after
                                                 [59 * MS, 61 * MS, 2.0]]
    df = window.mark_window(pd.concat([enc, req], ignore_index=True))
    llm = df[df.tenant == "llm"]
    assert llm["in_window"].tolist() == [False, True, True]
    assert not enc.empty and df[df.tenant == "a"]["in_window"].sum() >= 49


def test_incomplete_when_a_tenant_has_nothing_in_the_window():
    enc = launch("shared", 0, {"a": 1.0}, n=50, offsets={"a": 10 * MS})
    req = launch("shared", 0, {"llm": 1.0}, n=2)
    req[["start_ns", "end_ns"]] = [[0, 5 * MS], [1 * MS, 70 * MS]]  # every request arrived before a started
    df = window.mark_window(pd.concat([enc, req], ignore_index=True))
    why = window.incomplete(df, [("shared", 0, "a", 0), ("shared", 0, "llm", 0)])
    assert why == ["shared llm#0 (repeat 0): nothing in the common window"]
    assert window.incomplete(df, [("shared", 0, "a", 0)]) == []


# --- repeats are the unit --------------------------------------------------------------------

def test_each_repeat_uses_its_own_solo_baseline():
    df = run([{"a": 1.2, "b": 1.5}] * 3)
    # repeat 1's machine is 10% slower alone and shared alike: no change in its slowdown
    slow = (df["repeat"] == 1)
    df.loc[slow, "latency_ms"] *= 1.1
    reps = slowdown.per_repeat(df)
    assert reps.loc[reps.tenant == "a", "slowdown"].to_numpy() == pytest.approx([1.2] * 3)
    assert reps.loc[reps.tenant == "b", "slowdown"].to_numpy() == pytest.approx([1.5] * 3)


def test_headline_is_the_mean_over_repeats_with_a_t_interval_across_them():
    sd = [{"a": 1.18, "b": 1.4}, {"a": 1.22, "b": 1.6}, {"a": 1.2, "b": 1.5}]
    summary, m = slowdown.analyze(run(sd), {0: "solo-first", 1: "shared-first", 2: "solo-first"})
    assert m["ci_basis"] == "repeats" and m["n_repeats"] == 3 and m["ci_method"] == "student-t over repeats"
    stp = [1 / s["a"] + 1 / s["b"] for s in sd]
    assert m["stp"] == pytest.approx(np.mean(stp))
    assert m["stp_ci"] == pytest.approx(list(stats.t_interval(stp)[1:]))
    assert [p["order"] for p in m["per_repeat"]] == ["solo-first", "shared-first", "solo-first"]
    assert [p["stp"] for p in m["per_repeat"]] == pytest.approx(stp)
    a = summary[(summary.phase == "shared") & (summary.tenant == "a")].iloc[0]
    # a slowdown is a ratio: geometric mean, interval on the log scale
    logs = np.log([1.18, 1.22, 1.2])
    assert a["slowdown"] == pytest.approx(np.exp(logs.mean()))
    assert (a["slowdown_ci_low"], a["slowdown_ci_high"]) == pytest.approx(np.exp(stats.t_interval(logs)[1:]))
    assert a["verdict"] == "slower" and a["n_repeats"] == 3
    assert m["min_max_fairness"] == pytest.approx(np.mean([(1 / s["b"]) / (1 / s["a"]) for s in sd]))


def test_fewer_than_three_repeats_fall_back_to_the_block_bootstrap_and_say_so():
    summary, m = slowdown.analyze(run([{"a": 1.2, "b": 1.5}], noise=0.05))
    assert m["ci_basis"] == "within-run" and m["ci_method"].startswith("moving-block bootstrap")
    lo, hi = m["stp_ci"]
    assert lo < m["stp"] < hi and hi - lo < 0.2
    row = summary[(summary.phase == "shared") & (summary.tenant == "b")].iloc[0]
    assert row["slowdown_ci_low"] < 1.5 < row["slowdown_ci_high"]


def test_verdicts_and_the_noise_floor_from_the_solo_repeats():
    """No interference, but solo launches that differ by 8%: every effect stays inside the noise."""
    df = run([{"a": 1.0, "b": 1.0}] * 3, noise=0.01)
    df.loc[(df.phase == "solo") & (df.repeat == 1), "latency_ms"] *= 1.08
    summary, m = slowdown.analyze(df)
    noise = {n["tenant"]: n for n in m["noise"]}
    assert noise["a"]["noise_floor"] == pytest.approx(0.08, abs=0.01) and len(noise["a"]["solo_means_ms"]) == 3
    assert set(summary.loc[summary.phase == "shared", "verdict"]) == {"indistinguishable"}


def test_artefacts_are_warned_about_never_reported_as_findings():
    """Shared faster than alone, beyond its interval: STP above n. Both are flagged as artefacts."""
    df = run([{"a": 0.8, "b": 0.9}, {"a": 0.82, "b": 0.88}, {"a": 0.79, "b": 0.91}])
    summary, m = slowdown.analyze(df)
    assert set(summary.loc[summary.phase == "shared", "verdict"]) == {"faster"}
    w = slowdown.warnings_for(summary, m, {})
    assert any("exceeds the number of tenants (2) beyond its interval: a measurement artefact" in x for x in w)
    # above n only inside the noise: said so, not called an artefact
    m_noisy = {**m, "stp": 2.1, "stp_ci": [1.7, 2.5]}
    assert any("includes it: noise" in x for x in slowdown.warnings_for(summary, m_noisy, {}))
    assert sum("faster shared than alone" in x and "artefact" in x for x in w) == 2


def test_solo_variance_is_told_apart_from_shared_variance():
    df = run([{"a": 1.2, "b": 1.5}], noise=0.0)
    df.loc[(df.phase == "solo") & (df.tenant == "a"), "latency_ms"] *= np.tile([0.8, 1.2], 20)
    df.loc[(df.phase == "shared") & (df.tenant == "b"), "latency_ms"] *= np.tile([0.8, 1.2], 20)
    summary, m = slowdown.analyze(df)
    w = slowdown.warnings_for(summary, m, {})
    assert any(x.startswith("solo a#0: solo variance: a measurement problem") for x in w)
    assert any(x.startswith("shared b#0: shared variance: part of the effect") for x in w)


def test_serving_tenants_are_left_out_of_stp_and_report_their_own_slowdowns():
    df = run([{"a": 1.2, "llm": 3.0}] * 3, solo={"a": 2.0, "llm": 10.0})
    summary, m = slowdown.analyze(df)
    assert m["n_tenants"] == 1 and m["stp"] == pytest.approx(1 / 1.2)
    assert [s["tenant"] for s in m["serving"]] == ["llm"]
    assert m["serving"][0]["e2e_mean_slowdown"] == pytest.approx(3.0) and m["serving"][0]["repeats"] == 3


def test_phase_orders_are_balanced_and_drawn_from_the_seed():
    for seed in range(5):
        o = phase_orders(4, seed, "timeslice")
        assert sorted(o) == ["shared-first"] * 2 + ["solo-first"] * 2 and o == phase_orders(4, seed, "timeslice")
    assert len({tuple(phase_orders(6, s, "mps")) for s in range(10)}) > 1
    assert phase_orders(3, 0, "exclusive") == ["solo-only"] * 3
