"""Workload generators: seeded, right rates, right lengths, trace files, closed loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tenancy.serving.config import WorkloadConfig
from tenancy.serving.workload import RequestSource, RequestSpec, arrival_times, generate, load_trace, longest


def test_seeded_reproducible():
    cfg = WorkloadConfig(arrival="gamma", rate=5, burstiness=0.5, num_requests=50, seed=3)
    a, b = generate(cfg, 1000), generate(cfg, 1000)
    assert a == b
    c = generate(cfg.model_copy(update={"seed": 4}), 1000)
    assert [r.arrival_s for r in a] != [r.arrival_s for r in c]


def test_lengths_and_prompts():
    cfg = WorkloadConfig(num_requests=300, input_len=(32, 512), output_len=(1, 128))
    specs = generate(cfg, 1000)
    ins = np.array([len(s.prompt) for s in specs])
    outs = np.array([s.output_len for s in specs])
    assert ins.min() >= 32 and ins.max() <= 512 and outs.min() >= 1 and outs.max() <= 128
    assert abs(ins.mean() - 272) < 25 and abs(outs.mean() - 64.5) < 8
    assert min(min(s.prompt) for s in specs) >= 3 and max(max(s.prompt) for s in specs) < 1000
    arrivals = [s.arrival_s for s in specs]
    assert arrivals == sorted(arrivals) and arrivals[0] > 0
    fixed = generate(WorkloadConfig(num_requests=5, input_len=7, output_len=3), 100)
    assert {len(s.prompt) for s in fixed} == {7} and {s.output_len for s in fixed} == {3}


@pytest.mark.parametrize("arrival,shape", [("poisson", 1.0), ("gamma", 0.25), ("gamma", 4.0)])
def test_mean_rate_and_burstiness(arrival, shape):
    cfg = WorkloadConfig(arrival=arrival, rate=50.0, burstiness=shape, seed=1)
    t = arrival_times(cfg, np.random.default_rng(1), 20000)
    gaps = np.diff(np.concatenate([[0.0], t]))
    assert abs(len(t) / t[-1] - 50.0) / 50.0 < 0.03
    cv2 = gaps.var() / gaps.mean() ** 2  # squared coefficient of variation = 1/shape for gamma
    assert abs(cv2 - 1.0 / shape) / (1.0 / shape) < 0.1


def test_sinusoidal_rate_follows_the_sine():
    cfg = WorkloadConfig(arrival="sinusoidal", rate=40.0, amplitude=0.8, period_s=10.0, duration_s=400.0)
    t = arrival_times(cfg, np.random.default_rng(0), None)
    assert t.max() < 400.0 and abs(len(t) / 400.0 - 40.0) < 2.0  # whole periods: mean rate kept
    phase = (t % 10.0) / 10.0
    high, low = np.sum(phase < 0.5), np.sum(phase >= 0.5)  # sin > 0 in the first half
    expected = (1 + 0.8 * 2 / np.pi) / (1 - 0.8 * 2 / np.pi)
    assert abs(high / low - expected) / expected < 0.1


def test_duration_and_all_at_once():
    specs = generate(WorkloadConfig(rate=20, duration_s=5.0), 100)
    assert all(s.arrival_s < 5.0 for s in specs) and 60 < len(specs) < 140
    burst = generate(WorkloadConfig(arrival="all_at_once", num_requests=9), 100)
    assert len(burst) == 9 and {s.arrival_s for s in burst} == {0.0}


@pytest.mark.parametrize("cfg", [WorkloadConfig(num_requests=200, input_len=(1, 300), output_len=(1, 90), seed=5),
                                 WorkloadConfig(arrival="closed", concurrency=2, num_requests=40, input_len=(2, 50)),
                                 WorkloadConfig(rate=30, duration_s=3.0, output_len=(4, 400))])
def test_longest_is_the_longest_request_generate_makes(cfg):
    """The engine sizes its KV pool by it, before the run draws the requests."""
    assert longest(cfg) == max(len(s.prompt) + s.output_len for s in generate(cfg, 50))


def test_trace_file(tmp_path):
    path = tmp_path / "trace.jsonl"
    rows = [dict(arrival_s=0.5, input_len=10, output_len=3), dict(arrival_s=0.1, input_len=4, output_len=8)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    specs = generate(WorkloadConfig(trace=path), 100)
    assert [(s.arrival_s, len(s.prompt), s.output_len) for s in specs] == [(0.1, 4, 8), (0.5, 10, 3)]
    path.write_text('{"arrival_s": 1, "input_len": 3}\n')
    with pytest.raises(ValueError, match="output_len"):
        load_trace(path)


def test_open_and_closed_sources():
    specs = [RequestSpec(i, a, [5], 1) for i, a in enumerate([0.0, 0.2, 0.3])]
    src = RequestSource(specs)
    assert [s.id for s in src.due(0.1)] == [0] and src.next_arrival_s() == 0.2
    assert [s.id for s in src.due(1.0)] == [1, 2] and src.exhausted()
    closed = RequestSource([RequestSpec(i, None, [5], 1) for i in range(5)], concurrency=2)
    assert [s.id for s in closed.due(0.0)] == [0, 1] and closed.due(0.5) == []
    assert closed.next_arrival_s() is None and not closed.exhausted()
    closed.finished()
    (nxt,) = closed.due(0.7)
    assert nxt.id == 2 and closed.arrival_s(nxt) == 0.7
