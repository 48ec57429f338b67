"""The report's roofline table and predicted-against-measured table on a synthetic study whose
manifests carry peaks (nothing measured, so every number follows from the formulas)."""
from __future__ import annotations

import json

import pytest
from synthetic import SOLO_MS, write_run

from tenancy.analysis import predict, roofline
from tenancy.gpu.peaks import Cache
from tenancy.report import load, stats
from tenancy.report import roofline as report_roofline

PEAK = {"device": "cpu", "name": "cpu", "dtype": "float32", "flops_per_s": 100e9, "bytes_per_s": 20e9}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_run(root / "pair.bert+gpt2", "pair.bert+gpt2", [("bert", "bert-base", 1), ("gpt2", "distilgpt2", 1)],
              {"bert#0": [1.10, 1.12, 1.14], "gpt2#0": [1.30, 1.25, 1.35]}, cpu_count=2, threads=1)
    write_run(root / "group.bertx3", "group.bertx3", [("bert", "bert-base", 3)],
              {f"bert#{c}": [1.5, 1.6, 1.55] for c in range(3)}, cpu_count=2, threads=1)
    for run in root.iterdir():
        m = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**m, "peaks": {"float32": PEAK}}))
    return load.load([str(root)])


def test_roofline_rows_follow_the_formulas(runs):
    table = report_roofline.roofline_table(runs, Cache())
    assert set(table["peaks"]) == {report_roofline.FROM_RUN}
    row = table[(table["run"].str.endswith("pair.bert+gpt2")) & (table["phase"] == "solo")
                & (table["tenant"] == "bert")].iloc[0]
    cost = roofline.forward(roofline.dims("bert-base", "tiny"), 8, 128, 4)
    assert row["gflop"] == pytest.approx(cost.flops / 1e9) and row["intensity"] == pytest.approx(cost.intensity)
    assert row["achieved_gflops"] == pytest.approx(cost.flops / (row["mean_ms"] / 1e3) / 1e9)
    assert row["mfu"] == pytest.approx(row["achieved_gflops"] * 1e9 / PEAK["flops_per_s"])
    assert row["floor_ms"] == pytest.approx(max(cost.flops / 100e9, cost.bytes / 20e9) * 1e3)


def test_predictions_come_from_solo_demands(runs):
    _, slowdowns = stats.cell_tables(runs)
    pred = report_roofline.prediction_table(runs, slowdowns, Cache())
    trio = pred[pred["tenant set"] == "bertx3"]
    assert len(trio) == 3 and set(trio["bottleneck"]) <= {"compute", "slots"}
    # three one-thread processes on two cores hold 1.5 cores' worth of slots: at least 1.5x each
    assert (trio["slots"] == 0.5).all() and (trio["predicted"] >= 1.5 - 1e-9).all()
    work = {"model": "bert-base", "size": "tiny", "task": "forward", "batch": 8, "seq": 128, "new_tokens": 8,
            "dtype": "float32"}
    d = predict.demand(work, SOLO_MS["bert-base"], PEAK, 0.5)
    assert trio["predicted"].iloc[0] == pytest.approx(max(1.5, 3 * d.compute), rel=0.02)  # solo means jitter 1%
    row = trio.iloc[0]
    assert row["error"] == pytest.approx(row["predicted"] / row["measured"] - 1)
    assert row["explained"] == (row["lo"] <= row["predicted"] <= row["hi"])


def test_the_prediction_model_by_hand():
    a, b = predict.Demand(compute=0.7, memory=0.2, slots=0.0), predict.Demand(compute=0.6, memory=0.1, slots=0.0)
    assert predict.slowdowns([a, b]) == pytest.approx([1.3, 1.3])  # compute oversubscribed 1.3x
    assert predict.bottleneck([a, b]) == "compute"
    c = predict.Demand(compute=0.1, memory=0.1, slots=0.0)
    assert predict.slowdowns([c, c]) == [1.0, 1.0] and predict.bottleneck([c, c]) == "none"
    assert predict.slots_held("cuda", "timeslice", None, None) == 1.0  # one context at a time
    assert predict.slots_held("cuda", "mps", None, None) == 0.0
    assert predict.slots_held("cpu", "timeslice", 1, 2) == 0.5
