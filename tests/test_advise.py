"""`tenancy advise`: the MILP finds the known best placement of a synthetic pair matrix, respects
SLOs, marks predictions, and refuses impossible SLOs with one line (exit 2)."""
from __future__ import annotations

import json

import pytest
from helpers import tenancy_here
from synthetic import SOLO_MS, write_run

from tenancy.analysis.advise import Evidence, Measured, parse_pairs, plan
from tenancy.core.errors import TenancyError

GOOD, BAD = 1.1, 1.8


def _matrix(modes=("timeslice",), predict=None) -> Evidence:
    """A and B get along, C and D get along, every other pair hurts; solo 10 ms each."""
    good = {("A", "B"), ("C", "D")}
    measured = {}
    for x, y in [("A", "B"), ("A", "C"), ("A", "D"), ("B", "C"), ("B", "D"), ("C", "D")]:
        s = GOOD if (x, y) in good else BAD
        measured[("timeslice", (x, y))] = Measured({x: (s, s + 0.05), y: (s, s + 0.05)}, f"pair.{x}+{y}")
    return Evidence(solo_ms={n: 10.0 for n in "ABCD"}, measured=measured, modes=list(modes), predict=predict)


def _groups(p) -> set[frozenset[str]]:
    return {frozenset(m["tenant"] for m in g["tenants"]) for g in p["gpus"]}


def test_best_pairing_of_a_synthetic_matrix():
    p = plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=2, max_per_gpu=2)
    assert _groups(p) == {frozenset("AB"), frozenset("CD")}
    assert p["stp"] == pytest.approx(4 / GOOD) and p["gpus_used"] == 2
    assert "scipy.optimize.milp" in p["solver"]
    assert all(m["source"] == "measured" for g in p["gpus"] for m in g["tenants"])
    assert p["gpus"][0]["tenants"][0]["expected_ms"] == pytest.approx(10 * GOOD)


def test_enough_gpus_run_everyone_alone_and_fewest_gpus_packs_them():
    assert _groups(plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=4)) == {frozenset(n) for n in "ABCD"}
    p = plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=4, objective="gpus", max_per_gpu=2)
    assert p["gpus_used"] == 2 and _groups(p) == {frozenset("AB"), frozenset("CD")}


def test_an_slo_forces_a_tenant_alone():
    # A's 10.5 ms SLO: alone only (1.1 x 10 = 11 ms next to B). Then C+D share, B alone.
    p = plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=3, slos={"A": 10.5}, max_per_gpu=2)
    assert _groups(p) == {frozenset("A"), frozenset("B"), frozenset("CD")}
    assert p["stp"] == pytest.approx(2 + 2 / GOOD)


def test_unmeasured_groups_use_the_prediction_marked_as_such():
    ev = _matrix(predict=lambda mode, names: [1.2] * len(names) if len(names) == 3 else None)
    p = plan(ev, {n: 1 for n in "ABCD"}, gpus=2, slos={"A": 10.5}, max_per_gpu=3)
    assert _groups(p) == {frozenset("A"), frozenset("BCD")}  # only the prediction covers B+C+D
    trio = next(g for g in p["gpus"] if len(g["tenants"]) == 3)
    assert {m["source"] for m in trio["tenants"]} == {"predicted"} and "not measured" in trio["tenants"][0]["evidence"]


def test_the_mode_is_chosen_per_gpu():
    ev = _matrix(modes=("mps", "timeslice"))
    ev.measured[("mps", ("A", "B"))] = Measured({"A": (1.02, 1.04), "B": (1.02, 1.04)}, "pair.A+B.mps")
    p = plan(ev, {n: 1 for n in "ABCD"}, gpus=2, max_per_gpu=2)
    assert {(frozenset(m["tenant"] for m in g["tenants"]), g["sharing"]) for g in p["gpus"]} == {
        (frozenset("AB"), "mps"), (frozenset("CD"), "timeslice")}


def test_impossible_slos_are_refused():
    with pytest.raises(TenancyError, match="impossible SLO: A needs 5 ms but takes 10 ms alone"):
        plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=4, slos={"A": 5})
    with pytest.raises(TenancyError, match="no placement of 4 tenant copies on 1 GPU"):
        plan(_matrix(), {n: 1 for n in "ABCD"}, gpus=1)  # nothing measured or predicted for four together
    with pytest.raises(TenancyError, match="--slo Z: no tenant of that name"):
        plan(_matrix(), {"A": 1}, gpus=1, slos={"Z": 5})
    with pytest.raises(TenancyError, match="expected tenant=milliseconds"):
        parse_pairs(("A=fast",), "--slo")
    assert parse_pairs(("A=2", "B=30/s"), "--demand", rate_ok=True) == {"A": 2, "B": ("rate", 30.0)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    write_run(root / "pair.bert+gpt2", "pair.bert+gpt2", [("bert", "bert-base", 1), ("gpt2", "distilgpt2", 1)],
              {"bert#0": [1.10, 1.12, 1.14], "gpt2#0": [1.30, 1.25, 1.35]})
    return root


def test_cli_plans_from_a_study_as_json(study):
    proc = tenancy_here("advise", str(study), "--gpus", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    p = json.loads(proc.stdout)
    (gpu,) = p["gpus"]
    assert gpu["sharing"] == "timeslice" and {m["tenant"] for m in gpu["tenants"]} == {"bert", "gpt2"}
    bert = next(m for m in gpu["tenants"] if m["tenant"] == "bert")
    assert bert["source"] == "measured" and bert["slowdown"] == pytest.approx(1.12, abs=0.01)
    assert bert["solo_ms"] == pytest.approx(SOLO_MS["bert-base"], rel=0.02)


def test_cli_refuses_an_impossible_slo_in_one_line(study):
    proc = tenancy_here("advise", str(study), "--gpus", "2", "--slo", "bert=1")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: impossible SLO: bert needs 1 ms")
