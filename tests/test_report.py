"""`tenancy report`: every figure from the shipped study, honest intervals, one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import tenancy
from tenancy.report import stats
from tenancy.report.cli import build

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "results/reference/cpu-tiny"
FIGURES = ["latency-timeslice.png", "latency-streams.png", "pairs.png", "groups.png", "scaling.png", "sharing.png"]


@pytest.fixture(scope="session")
def shipped_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = tenancy("report", STUDY, "-o", out, timeout=300)
    assert res.returncode == 0, res.stderr
    return out, res


def test_report_on_the_shipped_study_draws_every_figure(shipped_report):
    out, res = shipped_report
    for name in FIGURES:
        assert (out / "figures" / name).stat().st_size > 10_000, name
    page = (out / "index.html").read_text()
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"figures/{name}" in page and f"figures/{name}" in md
    manifest = json.loads(next(STUDY.glob("pair.*/manifest.json")).read_text())
    assert manifest["environment"]["cpu"] in page  # the machine, from the manifests
    assert "Skipped: no gpu.parquet in these runs" in page  # a CPU study has no GPU timeline
    warnings = {w for d in STUDY.glob("*/manifest.json") for w in json.loads(d.read_text())["warnings"]}
    assert warnings and all(w.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in page
                            for w in warnings)
    groups = pd.read_csv(out / "tables/groups.csv")
    assert set(groups["category"]) == {"encoders only", "decoders only", "mixed"}
    assert set(groups["sharing"]) == {"timeslice", "streams"}
    assert ((groups["stp_lo"] <= groups["stp"]) & (groups["stp"] <= groups["stp_hi"])).all()
    assert "6 figure(s)" in res.stderr


def test_pair_table_matches_the_runs_own_slowdowns(shipped_report):
    out, _ = shipped_report
    pairs = pd.read_csv(out / "tables/pairs.csv").set_index(["sharing", "model"])
    summary = pd.read_csv(STUDY / "pair.tenants=bert+llama.sharing=timeslice/summary.csv")
    bert = summary[(summary["phase"] == "shared") & (summary["tenant"] == "bert")]["slowdown"].item()
    assert pairs.loc[("timeslice", "bert-base"), "llama-3.2-1b"] == pytest.approx(bert, rel=1e-4)


def test_bootstrap_interval_covers_the_true_value():
    """Synthetic lognormal latencies with known means: the 95% intervals cover the truth ~95% of the time."""
    rng = np.random.default_rng(7)
    sigma, solo_mu, shared_mu = 0.3, np.log([10.0, 40.0]), np.log([15.0, 50.0])
    true_mean = np.exp(shared_mu + sigma**2 / 2)
    true_nl = np.exp(shared_mu - solo_mu)
    true_stp = (1 / true_nl).sum()
    hits_mean = hits_stp = 0
    trials = 60
    for i in range(trials):
        solo = [rng.lognormal(m, sigma, 100) for m in solo_mu]
        shared = [rng.lognormal(m, sigma, 100) for m in shared_mu]
        _, lo, hi = stats.mean_ci(shared[0], n_resamples=500, seed=i)
        hits_mean += lo <= true_mean[0] <= hi
        _, lo, hi = stats.colocation_ci(shared, solo, [0, 1], n_resamples=500, seed=i)["stp"]
        hits_stp += lo <= true_stp <= hi
    assert hits_mean / trials >= 0.85 and hits_stp / trials >= 0.85
    point, lo, hi = stats.mean_ci(np.full(50, 3.0))  # constant data: no interval, no crash
    assert point == 3.0 and (np.isnan(lo) or lo == hi == 3.0)


def test_timeline_from_gpu_parquet_and_a_defensive_reader(tmp_path):
    run = tmp_path / "study" / "run"
    shutil.copytree(STUDY / "pair.tenants=bert+gpt2.sharing=timeslice", run)
    samples = pd.read_parquet(run / "samples.parquet")
    t = np.linspace(samples["start_ns"].min(), samples["end_ns"].max(), 200).astype("int64")
    pd.DataFrame({"phase": "shared", "repeat": 0, "launch": "shared", "time_ns": t,
                  "gpu_util_pct": np.linspace(0, 100, 200), "power_w": 80.0, "mem_used_mib": 1234.0}
                 ).to_parquet(run / "gpu.parquet")
    rep = build([str(tmp_path / "study")], tmp_path / "out")
    (tl,) = [f for f in rep["figures"] if f["id"].startswith("timeline")]
    assert tl["file"] and (tmp_path / "out" / tl["file"]).stat().st_size > 10_000
    pd.DataFrame({"clock": [1, 2], "temperature_c": [40, 41]}).to_parquet(run / "gpu.parquet")
    rep = build([str(tmp_path / "study")], tmp_path / "out2")
    (tl,) = [f for f in rep["figures"] if f["id"].startswith("timeline")]
    assert tl["file"] is None and "no time column" in tl["note"]


def test_figures_without_data_are_skipped_with_a_note(tmp_path):
    solo = STUDY / "solo.tenants=bert"
    rep = build([str(solo)], tmp_path / "out")
    skipped = {f["id"]: f["note"] for f in rep["figures"] if not f["file"]}
    assert {"latency", "pairs", "groups", "scaling", "sharing", "timeline"} <= set(skipped)
    assert skipped["pairs"].startswith("no runs of exactly two")


def test_compare_two_studies_side_by_side(tmp_path):
    rep = build([], tmp_path / "out", compare=(str(STUDY), str(STUDY)))
    (cmp,) = [f for f in rep["figures"] if f["id"] == "compare"]
    assert (tmp_path / "out" / cmp["file"]).exists()
    assert len(cmp["table"]) > 20 and np.allclose(cmp["table"]["latency ratio B/A"], 1.0)


def _broken_dirs(root: Path) -> dict[str, Path]:
    empty = root / "empty"
    empty.mkdir()
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{not json")
    noscenario = root / "noscenario"
    noscenario.mkdir()
    (noscenario / "manifest.json").write_text("{}")
    study = root / "study"
    shutil.copytree(STUDY / "solo.tenants=bert", study / "good")
    (study / "bad").mkdir()
    (study / "bad" / "manifest.json").write_text("[1, 2")
    return {"empty": empty, "corrupt": corrupt, "noscenario": noscenario, "study": study}


@pytest.mark.parametrize("case, expected", [
    ("empty", "not a tenancy run directory (no manifest.json) nor a study directory"),
    ("corrupt", "unreadable run directory"),
    ("noscenario", "broken manifest.json"),
    ("study", "unreadable run directory"),
])
def test_a_broken_run_directory_is_one_line_and_exit_2(tmp_path, case, expected):
    path = _broken_dirs(tmp_path)[case]
    res = tenancy("report", path, "-o", tmp_path / "out", timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], res.stderr
