"""Scenario matrices: expansion, deterministic names, overrides, and one-line errors."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers import tenancy_here, tiny, write_scenario

from tenancy.core.errors import TenancyError
from tenancy.harness.matrix import expand, expand_file, load_single

ROOT = Path(__file__).resolve().parent.parent
BASE = dict(name="m", device="cpu", tenants=[tiny("bert", "bert-base"), tiny("gpt2", "distilgpt2")])


def _error(data) -> str:
    with pytest.raises(TenancyError) as info:
        expand(data, "s.yaml")
    return str(info.value)


def test_product_in_file_order_with_deterministic_names():
    runs = expand({**BASE, "matrix": {"sharing": ["timeslice", "streams"], "tenants.*.batch": [1, 4, 8]}}, "s.yaml")
    assert [r.name for r in runs] == [f"m.sharing={s}.batch={b}" for s in ("timeslice", "streams") for b in (1, 4, 8)]
    assert [(r.scenario.mode, {t.batch for t in r.scenario.tenants}) for r in runs][4] == ("streams", {4})
    assert runs[0].axes == {"sharing": "timeslice", "tenants.*.batch": "1"}
    assert [r.name for r in expand({**BASE, "matrix": {"sharing": ["timeslice", "streams"],
                                                        "tenants.*.batch": [1, 4, 8]}})] == [r.name for r in runs]


def test_tenant_sets_defaults_and_per_tenant_overrides():
    data = {"name": "p", "tenant_defaults": {"size": "tiny", "batch": 2, "seq": 16},
            "tenants": [{"name": "x", "model": "bert-base"}],
            "matrix": {"tenants": [[{"name": "bert", "model": "bert-base", "copies": 2}],
                                   [{"name": "bert", "model": "bert-base"}, {"name": "gpt2", "model": "distilgpt2",
                                                                             "batch": 4}]],
                       "tenants.bert.mps.active_thread_percentage": [50],
                       "copies": [1, 3]}}
    runs = expand(data, "s.yaml")
    assert [r.name for r in runs] == [
        "p.tenants=bertx2.bert.mps.active_thread_percentage=50.copies=1",
        "p.tenants=bertx2.bert.mps.active_thread_percentage=50.copies=3",
        "p.tenants=bert+gpt2.bert.mps.active_thread_percentage=50.copies=1",
        "p.tenants=bert+gpt2.bert.mps.active_thread_percentage=50.copies=3"]
    bert, gpt2 = runs[3].scenario.tenants
    assert (bert.size, bert.batch, bert.copies, bert.mps.active_thread_percentage) == ("tiny", 2, 3, 50)
    assert (gpt2.batch, gpt2.copies, gpt2.mps.active_thread_percentage) == (4, 3, None)  # own field beats default
    assert runs[0].scenario.tenants[0].copies == 1  # the matrix beats the set's own copies


def test_a_file_without_matrix_is_one_run_named_as_written(tmp_path):
    path = write_scenario(tmp_path / "one.yaml", **BASE)
    (run,) = expand_file(path)
    assert (run.name, run.axes, load_single(path).name) == ("m", {}, "m")


@pytest.mark.parametrize("matrix, expected", [
    ({"colour": ["red"]}, "s.yaml: matrix.colour: unknown matrix key"),
    ({"tenants.nobody.batch": [1]}, "s.yaml: matrix.tenants.nobody.batch: no tenant named 'nobody' (tenants: bert, gpt2)"),
    ({"tenants.*.wings": [1]}, "s.yaml: matrix.tenants.*.wings: unknown tenant field 'wings'"),
    ({"tenants.*.mps.colour": [1]}, "s.yaml: matrix.tenants.*.mps.colour: use tenants.*.mps.<"),
    ({"sharing": "mps"}, "s.yaml: matrix.sharing: must be a non-empty list"),
    ({"sharing": []}, "s.yaml: matrix.sharing: must be a non-empty list"),
    ({"tenants": [{"name": "a"}]}, "s.yaml: matrix.tenants[0]: each value must be a non-empty list of tenants"),
    ({"sharing": ["mig"]}, "s.yaml (matrix run m.sharing=mig): sharing: unknown mode 'mig'; one of"),
    ({"tenants.*.batch": [0]}, "s.yaml (matrix run m.batch=0): tenants.0.batch: Input should be greater than 0"),
    ({"seed": [1, "1"]}, "s.yaml: matrix gives two runs the same name 'm.seed=1'"),
])
def test_matrix_errors_are_one_line_naming_file_and_key(matrix, expected):
    msg = _error({**BASE, "matrix": matrix})
    assert msg.startswith(expected), msg
    assert "\n" not in msg


def test_run_refuses_a_matrix_of_several_runs(tmp_path):
    path = write_scenario(tmp_path / "mx.yaml", **BASE, matrix={"sharing": ["timeslice", "streams"]})
    res = tenancy_here("run", path, "--out", tmp_path / "out")
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: {path}: a matrix of 2 runs; run them all with `tenancy sweep {path}`"
    assert not (tmp_path / "out").exists()


def test_seed_study_suite_follows_the_study():
    from tenancy.sweep import expand_all

    runs = expand_all([str(ROOT / "scenarios/seed-study")])
    names = [r.name for r in runs]
    assert len(names) == len(set(names)) == 5 + 15 * 2 + 6 * 2 + 2 * 4 * 2
    for r in runs:
        s = r.scenario
        assert (s.iterations, s.warmup, s.device) == (100, 10, "auto")
        assert all((t.batch, t.seq, t.dtype, t.size) == (8, 128, None, "full") for t in s.tenants)  # fp16 on a GPU
    solo = [r for r in runs if r.name.startswith("solo.")]
    assert {r.scenario.tenants[0].model for r in solo} == {"bert-base", "deberta-v3-base", "distilgpt2",
                                                            "llama-3.2-1b", "mistral-7b"}
    assert all(r.scenario.mode == "exclusive" for r in solo)
    shared = [r for r in runs if r not in solo]
    assert {r.scenario.mode for r in shared} == {"timeslice", "mps"}
    pairs = {frozenset((t.model, t.copies) for t in r.scenario.tenants) for r in runs if r.name.startswith("pair.")}
    assert len(pairs) == 15
    assert any(r.scenario.tenants[0].copies == 4 and r.scenario.tenants[1].model == "llama-3.2-1b"
               for r in runs if r.name.startswith("group."))  # many encoders, a few decoders
    scaling = {sum(t.copies for t in r.scenario.tenants) for r in runs if r.name.startswith("scaling.")}
    assert scaling == {1, 2, 4, 8}


def test_cpu_suite_is_the_tiny_twin():
    from tenancy.sweep import expand_all

    runs = expand_all([str(ROOT / "scenarios/cpu")])
    assert len(runs) == 20
    assert all(r.scenario.device == "cpu" and all(t.size == "tiny" for t in r.scenario.tenants) for r in runs)
    assert {r.scenario.mode for r in runs} == {"exclusive", "timeslice", "streams"}
