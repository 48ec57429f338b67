"""Metric definitions on hand-made timestamps, and KV block accounting."""
from __future__ import annotations

import math

import pytest

from tenancy.serving.block_manager import BlockManager
from tenancy.serving.metrics import request_summary, to_frame
from tenancy.serving.sequence import SamplingParams, Sequence, Status

MS = 1_000_000  # ns


def seq(i, arrival_ms, admit_ms, token_ms, finish_ms=None, status=Status.FINISHED):
    s = Sequence(i, [5] * 4, SamplingParams(max(1, len(token_ms))), arrival_ns=arrival_ms * MS)
    s.admitted_ns = admit_ms * MS
    s.token_ns = [t * MS for t in token_ms]
    s.token_ids += [7] * len(token_ms)
    s.status = status
    s.finish_ns = (finish_ms if finish_ms is not None else token_ms[-1]) * MS
    return s


def test_per_request_and_summary_definitions():
    t0 = 1000 * MS
    seqs = [
        seq(0, 1000, 1010, [1100, 1120, 1160]),  # ttft 100, tpot (160-100)/2 = 30, itl 20,40
        seq(1, 1200, 1200, [1250]),  # one token: ttft 50, no tpot, no itl
        seq(2, 1300, 1400, [1500, 1600], finish_ms=2000),  # returned at 2000: e2e 700, tpot 500
    ]
    df = to_frame(seqs, t0, "iteration")
    assert df["ttft_ms"].tolist() == pytest.approx([100, 50, 200])
    assert df["e2e_ms"].tolist() == pytest.approx([160, 50, 700])
    assert df["queue_ms"].tolist() == pytest.approx([10, 0, 100])
    assert df["tpot_ms"][0] == pytest.approx(30) and math.isnan(df["tpot_ms"][1])
    assert df["tpot_ms"][2] == pytest.approx(500)
    assert df["token_times_s"][0] == pytest.approx([0.1, 0.12, 0.16])

    s = request_summary(df, {"ttft_ms": 150, "tpot_ms": 100})
    assert s["duration_s"] == pytest.approx(1.0)  # clock start to the last finish
    assert s["request_throughput"] == pytest.approx(3.0)
    assert s["output_throughput"] == pytest.approx(6.0)
    assert s["goodput"] == pytest.approx(2.0)  # request 2 misses both SLOs; request 1 has no TPOT
    assert s["mean_ttft_ms"] == pytest.approx(350 / 3) and s["p50_ttft_ms"] == pytest.approx(100)
    assert s["mean_itl_ms"] == pytest.approx((20 + 40 + 100) / 3) and s["p50_itl_ms"] == pytest.approx(40)
    assert s["mean_tpot_ms"] == pytest.approx(265)
    assert request_summary(df, {"e2e_ms": 100})["goodput"] == pytest.approx(1.0)
    assert math.isnan(request_summary(df)["goodput"])  # no SLO given


def test_failed_requests_are_counted_not_measured():
    ok = seq(0, 0, 0, [10, 20])
    bad = Sequence(1, [5] * 4, SamplingParams(4), arrival_ns=5 * MS)
    bad.fail("too long", 5 * MS)
    df = to_frame([ok, bad], 0, "iteration")
    s = request_summary(df, {"ttft_ms": 1000})
    assert (s["completed"], s["failed"], s["goodput"]) == (1, 1, pytest.approx(1 / 0.02))
    assert df.loc[1, "error"] == "too long" and df.loc[1, "output_len"] == 0


def test_block_manager_paged_and_reserve():
    paged = BlockManager(num_blocks=5, block_size=4, policy="paged")
    s = Sequence(0, [5] * 6, SamplingParams(10))  # needs 16 tokens at most = 4 blocks
    assert paged.ensure(s, 6) and len(s.block_table) == 2 and paged.num_free == 3
    s.num_computed = 6
    assert paged.ensure(s, 1) and len(s.block_table) == 2  # 7 tokens still fit in 2 blocks
    s.num_computed = 8
    assert paged.ensure(s, 1) and len(s.block_table) == 3
    other = Sequence(1, [5] * 9, SamplingParams(1))
    assert not paged.ensure(other, 9) and other.block_table == []  # all-or-nothing
    paged.free(s)
    assert paged.num_free == 5 and s.block_table == []

    reserve = BlockManager(num_blocks=5, block_size=4, policy="reserve")
    s = Sequence(0, [5] * 6, SamplingParams(10))
    assert reserve.ensure(s, 6) and len(s.block_table) == 4  # prompt + max_new up front
    assert not reserve.ensure(Sequence(1, [5] * 2, SamplingParams(6)), 2)  # needs 2 blocks, 1 left
    assert not reserve.fits_ever(Sequence(2, [5] * 20, SamplingParams(1))) and reserve.fits_ever(s)
