"""`tenancy report`: the findings, the pair matrix and the pooling of repeats on synthetic run
directories in the results contract's shape, old run directories tolerated, one-line errors."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tenancy_here
from synthetic import write_run

from tenancy.analysis import stats as tstats
from tenancy.cli.report import build

ROOT = Path(__file__).resolve().parent.parent
STUDY = ROOT / "results/reference/cpu-tiny"  # schema 2: 3 repeats per run, with the A/A control
FIGURES = ["latency-timeslice.png", "latency-streams.png", "pairs.png", "groups.png", "scaling.png", "sharing.png",
           "roofline.png", "prediction.png"]  # the shipped CPU runs predate peaks: measured at report time
B, G, L = ("bert", "bert-base"), ("gpt2", "distilgpt2"), ("llama", "llama-3.2-1b")


def synthetic_study(root: Path, scale: float = 1.0) -> Path:
    """A/A control, four pairs (one mixed, one indistinguishable), one pair under MPS that runs
    faster shared (an artefact), two copies and four copies of bert, two groups."""
    def s(*v: float) -> list[float]:
        return [1 + (x - 1) * scale for x in v]

    write_run(root / "control.aa", "control.aa", [(*B, 1)], {"bert#0": s(1.01, 0.99, 1.00)})
    write_run(root / "pair.bert+gpt2", "pair.bert+gpt2", [(*B, 1), (*G, 1)],
              {"bert#0": s(1.05, 1.06, 1.04), "gpt2#0": s(1.10, 1.12, 1.08)})
    write_run(root / "pair.bertx2", "pair.bertx2", [(*B, 2)],
              {"bert#0": s(1.5, 1.6, 1.55), "bert#1": s(1.52, 1.58, 1.5)})
    write_run(root / "pair.gpt2+llama", "pair.gpt2+llama", [(*G, 1), (*L, 1)],
              {"gpt2#0": s(1.0, 1.02, 0.98), "llama#0": s(1.01, 0.99, 1.0)})
    write_run(root / "pair.llamax2", "pair.llamax2", [(*L, 2)],
              {"llama#0": s(2.0, 2.1, 1.9), "llama#1": s(1.95, 2.05, 2.0)})
    write_run(root / "pair.bert+gpt2.mps", "pair.bert+gpt2.mps", [(*B, 1), (*G, 1)],
              {"bert#0": s(0.90, 0.91, 0.89), "gpt2#0": s(0.95, 0.96, 0.94)}, sharing="mps")
    write_run(root / "scaling.bertx4", "scaling.bertx4", [(*B, 4)],
              {f"bert#{c}": s(2.4, 2.41, 2.42) for c in range(4)}, cpu_count=4, threads=2)
    write_run(root / "group.bertx2+gpt2", "group.bertx2+gpt2", [(*B, 2), (*G, 1)],
              {"bert#0": s(1.4, 1.5, 1.45), "bert#1": s(1.42, 1.48, 1.4), "gpt2#0": s(1.2, 1.25, 1.22)})
    return root


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    study = synthetic_study(root / "study")
    out = root / "out"
    rep = build([str(study)], out)
    from tenancy.report import render
    render.write(rep, out)
    return rep, out


def _texts(rep, section: str) -> list[str]:
    return [f["text"] for f in rep["findings"] if f["section"] == section]


def test_findings_come_first_control_first_with_intervals(synthetic_report):
    rep, out = synthetic_report
    md = (out / "report.md").read_text()
    page = (out / "index.html").read_text()
    assert md.index("## Findings") < md.index("## Environment") < md.index("## Pair interference matrix")
    assert page.index("id='findings'") < page.index("<h2>Environment")
    sections = [f["section"] for f in rep["findings"]]
    assert sections[0] == "What no effect looks like on this machine"
    control = _texts(rep, sections[0])[0]
    assert "bert (timeslice), the same work alone twice" in control and "includes 1, as it should" in control
    assert md.index("the same work alone twice") < md.index("Least interference")


def test_findings_name_least_and_most_interfering_pairs_without_inventing_effects(synthetic_report):
    rep, _ = synthetic_report
    pairs = _texts(rep, "Pairs")
    least = next(t for t in pairs if t.startswith("Least interference"))
    most = next(t for t in pairs if t.startswith("Most interference"))
    assert "gpt2+llama (timeslice)" in least and least.endswith("indistinguishable from no interference.")
    assert "llamax2 (timeslice), mean slowdown 2.00× [" in most and "slower" in most
    assert "indistinguishable" not in most
    kinds = {f["text"]: f["kind"] for f in rep["findings"]}
    assert kinds[least] == "no effect" and kinds[most] == "finding"
    # every stated effect has an interval that excludes 1
    for f in rep["findings"]:
        if f["kind"] == "finding" and f["section"] == "Pairs":
            assert "(no interval)" not in f["text"]


def test_artefacts_are_listed_as_such_never_as_findings(synthetic_report):
    rep, _ = synthetic_report
    artefacts = _texts(rep, "Measurement artefacts (not findings)")
    assert any("bert+gpt2 (mps): STP" in t and "exceeds its 2 tenants" in t for t in artefacts)
    assert any(t.startswith("bert#0 in bert+gpt2 (mps) ran faster shared") for t in artefacts)
    mps = next(f for f in rep["findings"] if f["section"] == "Pairs" and "(mps)" in f["text"])
    assert mps["kind"] == "artefact"
    sharing = _texts(rep, "Sharing modes")
    assert sharing and sharing[0].startswith("mps against timeslice over 1 tenant set")
    scaling = _texts(rep, "Scaling")
    assert any("4 copies of bert-base (timeslice)" in t and "reachable ideal 2.00× (4 cores / 2 thread(s) per copy)"
               in t for t in scaling)


def test_pair_matrix_prints_intervals_and_marks_those_including_one(synthetic_report):
    rep, out = synthetic_report
    (fig,) = [f for f in rep["figures"] if f["id"] == "pairs"]
    assert (out / fig["file"]).stat().st_size > 10_000 and "includes 1" in fig["caption"]
    m = pd.read_csv(out / "tables/pairs.csv").set_index(["sharing", "model", "with"])
    assert {"slowdown", "lo", "hi", "includes_one", "verdict"} <= set(m.columns)
    quiet = m.loc[("timeslice", "distilgpt2", "llama-3.2-1b")]
    assert quiet["includes_one"] and quiet["verdict"] == "indistinguishable" and quiet["lo"] <= 1 <= quiet["hi"]
    loud = m.loc[("timeslice", "llama-3.2-1b", "llama-3.2-1b")]
    assert not loud["includes_one"] and loud["verdict"] == "slower" and loud["lo"] > 1
    # two copies of one model: their mean, an interval spanning both copies' intervals
    cp = [tstats.t_interval(v) for v in ([2.0, 2.1, 1.9], [1.95, 2.05, 2.0])]
    csv = {"rel": 1e-5}  # the CSV keeps 6 significant digits
    assert loud["slowdown"] == pytest.approx(2.0) and loud["lo"] == pytest.approx(min(c[1] for c in cp), **csv)
    assert loud["hi"] == pytest.approx(max(c[2] for c in cp), **csv)
    bert = m.loc[("timeslice", "bert-base", "distilgpt2")]
    assert bert["slowdown"] == pytest.approx(1.05) and (bert["lo"], bert["hi"]) == pytest.approx(
        tstats.t_interval([1.05, 1.06, 1.04])[1:], **csv)


def test_every_caption_says_what_its_interval_covers(synthetic_report):
    rep, _ = synthetic_report
    for f in rep["figures"]:
        if f.get("file") and not f["id"].startswith(("latency", "roofline")):  # means, no intervals
            assert "Student-t interval across the run's repeats" in f["caption"], f["id"]
    latency = [f for f in rep["figures"] if f["id"].startswith("latency")]
    assert latency and all("n is the number of in-window iterations" in f["caption"] for f in latency)
    groups = next(f for f in rep["figures"] if f["id"] == "groups")
    assert {"min_max_fairness", "min_max_fairness_lo", "fairness_lo"} <= set(groups["table"].columns)


def test_runs_of_one_scenario_in_two_directories_pool_their_repeats(tmp_path):
    pair = [(*B, 1), (*G, 1)]
    first = {"bert#0": [1.10, 1.20], "gpt2#0": [1.0, 1.02]}
    second = {"bert#0": [1.15, 1.30], "gpt2#0": [0.99, 1.01]}
    write_run(tmp_path / "a" / "pair.bert+gpt2", "pair.bert+gpt2", pair, first)
    write_run(tmp_path / "b" / "pair.bert+gpt2", "pair.bert+gpt2", pair, second)
    write_run(tmp_path / "b" / "pair.bert+gpt2.more", "pair.bert+gpt2", pair, second)  # same name, one study
    rep = build([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "out")
    assert rep["n_runs"] == 3
    cells, slow = rep["tables"]["cells"], rep["tables"]["slowdowns"]
    assert len(cells) == 1
    c = cells.iloc[0]
    assert c["basis"] == "pooled" and c["n_runs"] == 3 and c["n_repeats"] == 6 and "6 repeats in 3 run" in c["ci"]
    bert = slow[slow["tenant"] == "bert"].iloc[0]
    values = first["bert#0"] + second["bert#0"] * 2
    assert (bert["slowdown"], bert["lo"], bert["hi"]) == pytest.approx(tstats.interval("slowdown", values))
    assert bert["verdict"] == "slower"
    stp = [tstats.colocation([b, g])["stp"] for run in (first, second, second)
           for b, g in zip(run["bert#0"], run["gpt2#0"])]
    assert (c["stp"], c["stp_lo"], c["stp_hi"]) == pytest.approx(tstats.t_interval(stp))
    assert any("pooled" in t for t in _texts(rep, "Notes"))


def test_old_run_directories_are_shown_without_intervals_and_never_crash(tmp_path):
    write_run(tmp_path / "s" / "old.pair", "old.pair", [(*B, 1), (*G, 1)],
              {"bert#0": [1.3], "gpt2#0": [1.1]}, schema=1)
    write_run(tmp_path / "s" / "new.pair", "new.pair", [(*B, 1), (*L, 1)],
              {"bert#0": [1.2, 1.25, 1.22], "llama#0": [1.05, 1.06, 1.04]})
    rep = build([str(tmp_path / "s")], tmp_path / "out")
    cells = rep["tables"]["cells"].set_index("name")
    assert cells.loc["old.pair", "basis"] == "none" and np.isnan(cells.loc["old.pair", "stp_lo"])
    assert cells.loc["old.pair", "min_max_fairness"] == pytest.approx((1 / 1.3) / (1 / 1.1), rel=0.05)
    assert cells.loc["new.pair", "basis"] == "repeats"
    assert any("schema 1" in n for n in rep["notes"])
    old = next(f for f in rep["findings"] if "bert+gpt2" in f["text"] and f["section"] == "Pairs")
    assert old["kind"] == "note" and "not judged" in old["text"]


def test_compare_three_studies_on_the_command_line(tmp_path):
    for name, scale in (("a", 1.0), ("b", 1.3), ("c", 0.7)):
        synthetic_study(tmp_path / name, scale)
    out = tmp_path / "cmp"
    res = tenancy_here("report", "--compare", tmp_path / "a", tmp_path / "b", tmp_path / "c", "-o", out)
    assert res.returncode == 0, res.stderr
    assert (out / "figures/compare.png").stat().st_size > 10_000
    table = pd.read_csv(out / "tables/compare.csv")
    assert set(table["input"]) == {"a (CPU)", "b (CPU)", "c (CPU)"}
    ratio = table.groupby("input")["slowdown / first input"].median()
    assert ratio["a (CPU)"] == pytest.approx(1.0) and ratio["b (CPU)"] > 1 > ratio["c (CPU)"]
    md = (out / "report.md").read_text()
    comparison = md.split("### Comparison")[1].split("###")[0]
    assert "b (CPU) against a (CPU)" in comparison and "c (CPU) against a (CPU)" in comparison
    # the README's form: --compare A B -o OUT
    res = tenancy_here("report", "--compare", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "cmp2")
    assert res.returncode == 0 and (tmp_path / "cmp2/figures/compare.png").exists(), res.stderr
    res = tenancy_here("report", "--compare", tmp_path / "a", "-o", tmp_path / "cmp3")
    assert res.returncode == 2 and "two or more" in res.stderr


@pytest.fixture(scope="session")
def shipped_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    res = tenancy_here("report", STUDY, "-o", out)
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
    # the findings open with the A/A control: what no effect looks like on this machine
    assert page.index("What no effect looks like on this machine") < page.index("the same work alone twice") \
        < page.index("Pairs")
    groups = pd.read_csv(out / "tables/groups.csv")
    assert set(groups["category"]) == {"encoders only", "decoders only", "mixed"}
    assert set(groups["sharing"]) == {"timeslice", "streams"}
    assert "8 figure(s)" in res.stderr
    assert "Predicted against measured slowdown" in md and "tables/prediction.csv" in md
    # the two-BERT pair's STP above 2 beyond its interval is flagged as an artefact, never a finding
    assert "exceeds the number of tenants (2) beyond its interval: a measurement artefact" in md


def test_pair_table_matches_the_runs_own_slowdowns(shipped_report):
    out, _ = shipped_report
    pairs = pd.read_csv(out / "tables/pairs.csv").set_index(["sharing", "model", "with"])
    summary = pd.read_csv(STUDY / "pair.tenants=bert+llama.sharing=timeslice/summary.csv")
    bert = summary[(summary["phase"] == "shared") & (summary["tenant"] == "bert")]["slowdown"].item()
    assert pairs.loc[("timeslice", "bert-base", "llama-3.2-1b"), "slowdown"] == pytest.approx(bert, rel=1e-4)


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
    assert rep["findings"][0]["text"].startswith("No run with a shared phase")


def _broken_dirs(root: Path) -> dict[str, Path]:
    empty = root / "empty"
    empty.mkdir()
    corrupt = root / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text("{not json")
    noscenario = root / "noscenario"
    noscenario.mkdir()
    (noscenario / "manifest.json").write_text("{}")
    truncated = root / "truncated"
    shutil.copytree(STUDY / "solo.tenants=bert", truncated)
    data = (truncated / "samples.parquet").read_bytes()
    (truncated / "samples.parquet").write_bytes(data[: len(data) // 2])
    nophase = root / "nophase"
    shutil.copytree(STUDY / "solo.tenants=bert", nophase)
    pd.read_csv(nophase / "summary.csv").drop(columns=["phase"]).to_csv(nophase / "summary.csv", index=False)
    return {"empty": empty, "corrupt": corrupt, "noscenario": noscenario, "truncated": truncated, "nophase": nophase}


@pytest.mark.parametrize("case, expected", [
    ("empty", "not a tenancy run directory (no manifest.json) nor a study directory"),
    ("corrupt", "unreadable run directory"),
    ("noscenario", "broken manifest.json"),
    ("truncated", "unreadable run directory"),
    ("nophase", "summary.csv lacks column(s) phase"),
])
def test_a_broken_run_directory_is_one_line_and_exit_2(tmp_path, case, expected):
    path = _broken_dirs(tmp_path)[case]
    res = tenancy_here("report", path, "-o", tmp_path / "out")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nothing to report: ") and expected in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


def test_a_folder_of_runs_of_every_kind_reports_what_it_understands_and_names_the_rest(tmp_path):
    """The repository's own results/reference holds a study, a `tenancy scale` run and notes: each
    understood run is reported, each skipped folder is one line saying why; broken runs beside
    good ones are skipped, never fatal."""
    root = tmp_path / "mixed"
    shutil.copytree(STUDY / "solo.tenants=bert", root / "study" / "good")
    (tmp_path / "broken").mkdir()
    broken = _broken_dirs(tmp_path / "broken")
    for name in ("corrupt", "truncated", "nophase"):
        shutil.copytree(broken[name], root / "study" / name)
    shutil.copytree(ROOT / "results/reference/autoscale-cpu", root / "autoscale")
    (root / "notes").mkdir()
    (root / "notes" / "bench.md").write_text("# numbers\n")
    res = tenancy_here("report", root, "-o", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    skipped = [ln for ln in res.stderr.splitlines() if ln.startswith("skipped ")]
    assert len([ln for ln in skipped if "/study/" in ln]) == 3, res.stderr
    assert any("lacks column(s) phase" in ln for ln in skipped)
    assert any(ln.startswith(f"skipped {root / 'notes'}: not a tenancy run directory") for ln in skipped)
    assert (tmp_path / "out" / "report.md").exists() and (tmp_path / "out" / "autoscale" / "report.md").exists()
    assert "1 run(s)" in res.stderr and "internal error" not in res.stderr
