"""tools/bench_engines.py's pure logic (tools/engines_report.py) on synthetic numbers: the seeded
request set, the exact-length check, greedy agreement, and the round summary and ratio math."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from engines_report import agreement, length_errors, make_requests, spread, summarize, throughput  # noqa: E402


def test_request_set_is_seeded_and_in_range():
    a = make_requests(20, (32, 256), (8, 16), vocab=1000, seed=3)
    assert a == make_requests(20, (32, 256), (8, 16), vocab=1000, seed=3)
    assert a != make_requests(20, (32, 256), (8, 16), vocab=1000, seed=4)
    assert [r["id"] for r in a] == list(range(20))
    assert all(32 <= len(r["prompt"]) <= 256 and 8 <= r["output_len"] <= 16 for r in a)
    assert all(3 <= t < 1000 for r in a for t in r["prompt"])


def test_length_errors_name_each_wrong_request():
    reqs = [{"id": 0, "prompt": [5], "output_len": 2}, {"id": 1, "prompt": [5], "output_len": 3}]
    assert length_errors(reqs, [[1, 2], [1, 2, 3]]) == []
    assert length_errors(reqs, [[1, 2], [1, 2]]) == ["request 1: 2 tokens, asked 3"]
    assert length_errors(reqs, [[1, 2]]) == ["1 outputs for 2 requests"]


def test_agreement_finds_the_first_divergence():
    same, frac, div = agreement([[1, 2, 3, 4], [1, 2]], [[1, 2, 9, 4], [1, 2]])
    assert div == [2, 2]
    assert same == 0.5
    assert frac == 4 / 6


def test_throughput_counts_requested_tokens():
    reqs = [{"prompt": [1] * 10, "output_len": 5}, {"prompt": [1] * 30, "output_len": 15}]
    assert throughput(reqs, 2.0) == (10.0, 30.0)


def test_summary_medians_and_per_round_ratio():
    rows = [{"dtype": "float32", "system": s, "round": k, "out_tps": v, "total_tps": 2 * v, "latency_ms": 10.0}
            for k, (ours, ref) in enumerate([(10.0, 40.0), (30.0, 60.0), (20.0, 20.0)])
            for s, v in (("ours", ours), ("vllm", ref))]
    by = {r["system"]: r for r in summarize(rows)}
    assert by["ours"]["out_tps"] == "20 (10-30)"
    assert by["vllm"]["total_tps"] == "80 (40-120)"
    assert by["ours"]["ours_over_ref"] == "0.25 0.50 1.00"
    assert by["vllm"]["ours_over_ref"] == ""
    assert spread([]) == "-"
