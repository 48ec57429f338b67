"""`tenancy sweep`: one study directory, failures recorded, resume runs only what is missing."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from helpers import FAST, broken_weights, machine, tenancy, tenancy_here, tiny, write_scenario

from tenancy.core.errors import TenancyError
from tenancy.gpu import devices, environment
from tenancy.harness.matrix import Expanded
from tenancy.harness.scenario import parse_scenario
from tenancy.sweep import expand_all, plan

ROOT = Path(__file__).resolve().parent.parent


def _suite(root: Path) -> Path:
    suite = root / "suite"
    suite.mkdir()
    fast = {**FAST, "iterations": 5}
    write_scenario(suite / "broken.yaml", name="broken", sharing="exclusive", **fast,  # sorts first
                   tenants=[tiny("bert", "bert-base", weights=broken_weights(root))])
    write_scenario(suite / "mps.yaml", name="needs-gpu", sharing="mps", **fast, tenants=[tiny("bert", "bert-base")])
    write_scenario(suite / "solo.yaml", name="s", sharing="exclusive", **fast, tenants=[tiny("x", "bert-base")],
                   matrix={"tenants": [[tiny("bert", "bert-base")], [tiny("gpt2", "distilgpt2")]]})
    return suite


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    """A sweep of a broken run, an MPS run a CPU cannot do, then two tiny solo runs."""
    root = tmp_path_factory.mktemp("sweep")
    suite = _suite(root)
    res = tenancy("sweep", suite, "--out", root / "study", "--no-control", timeout=600)
    return root, suite, root / "study", res


def _index(study_dir: Path) -> pd.DataFrame:
    return pd.read_csv(study_dir / "sweep.csv").set_index("name")


def _created(run_dir: Path) -> str:
    return json.loads((run_dir / "manifest.json").read_text())["created"]


def test_failures_are_recorded_and_the_rest_still_runs(study):
    _, _, study_dir, res = study
    assert res.returncode == 1, res.stderr  # one run failed
    idx = _index(study_dir)
    assert idx.loc["s.tenants=bert", "status"] == "complete"
    assert idx.loc["s.tenants=gpt2", "status"] == "complete"
    assert idx.loc["broken", "status"] == "failed"  # ran first; the others still ran
    assert "bert#0 error" in idx.loc["broken", "message"]
    assert idx.loc["needs-gpu", "status"] == "skipped"
    assert idx.loc["needs-gpu", "message"].startswith("unavailable:")
    assert not (study_dir / "needs-gpu").exists()
    for name in ("s.tenants=bert", "s.tenants=gpt2"):
        assert json.loads((study_dir / name / "manifest.json").read_text())["status"] == "complete"
    index = json.loads((study_dir / "study.json").read_text())
    assert {r["name"] for r in index["runs"]} == set(idx.index)
    assert [r["name"] for r in index["runs"]] == ["broken", "needs-gpu", "s.tenants=bert", "s.tenants=gpt2"]
    assert index["runs"][2]["axes"] == {"tenants": "bert"}


def test_resume_reruns_only_what_is_missing(study, tmp_path):
    _, suite, study_dir, _ = study
    copy = tmp_path / "study"
    shutil.copytree(study_dir, copy)
    partial = copy / "s.tenants=gpt2"
    manifest = json.loads((partial / "manifest.json").read_text())
    manifest["status"] = "interrupted"  # what a sweep killed during this run leaves
    (partial / "manifest.json").write_text(json.dumps(manifest))
    before = {n: _created(copy / n) for n in ("s.tenants=bert", "s.tenants=gpt2")}
    mtime = (copy / "s.tenants=bert" / "samples.parquet").stat().st_mtime_ns

    res = tenancy("sweep", suite / "solo.yaml", "--out", copy, timeout=600)  # a subset into the same study
    assert res.returncode == 0, res.stderr
    assert _created(copy / "s.tenants=bert") == before["s.tenants=bert"]
    assert (copy / "s.tenants=bert" / "samples.parquet").stat().st_mtime_ns == mtime
    assert _created(copy / "s.tenants=gpt2") != before["s.tenants=gpt2"]
    assert json.loads((copy / "s.tenants=gpt2" / "manifest.json").read_text())["status"] == "complete"
    aside = copy / "_aside" / "s.tenants=gpt2.1"
    assert json.loads((aside / "manifest.json").read_text())["status"] == "interrupted"  # kept, not mixed
    idx = _index(copy)
    assert idx.loc["s.tenants=bert", "message"] == "already complete"
    assert idx.loc["s.tenants=gpt2", "set_aside"] == "_aside/s.tenants=gpt2.1"
    assert "already complete" in res.stderr and "s.tenants=bert" in res.stderr
    assert idx.loc["broken", "status"] == "failed"  # rows of runs not swept this time are kept


def test_a_changed_scenario_is_measured_again(study, tmp_path):
    _, suite, study_dir, _ = study
    from tenancy.harness.matrix import expand_file
    from tenancy.sweep import existing_status

    run = next(r for r in expand_file(suite / "solo.yaml") if r.name == "s.tenants=bert")
    (planned,) = plan([run], None, None, None)
    assert existing_status(study_dir / run.name, planned.scenario) == "complete"
    (longer,) = plan([run], None, 7, None)
    assert existing_status(study_dir / run.name, longer.scenario) == "measured with a different iterations"
    assert existing_status(tmp_path / "nothing", planned.scenario) == "absent"
    older = tmp_path / "older"  # written before the tool grew a tenant field: still the same run
    shutil.copytree(study_dir / run.name, older)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["scenario"]["tenants"][0]["threads"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert existing_status(older, planned.scenario) == "complete"


def test_dry_run_lists_runs_and_memory_without_running(tmp_path):
    res = tenancy_here("sweep", ROOT / "scenarios/cpu", "--dry-run", "--out", tmp_path / "s")
    assert res.returncode == 0, res.stderr
    assert "21 run(s), device cpu" in res.stdout  # the suite's 20 and the A/A control
    assert "pair.tenants=bert+gpt2.sharing=timeslice" in res.stdout and "GiB" in res.stdout
    assert "control-aa." in res.stdout and "21 of 21 run(s) would run" in res.stderr
    assert not (tmp_path / "s").exists()


def test_dry_run_refuses_what_cannot_fit_the_gpu(monkeypatch):
    gpu = {"index": 0, "name": "Small GPU", "memory_total_mib": 16 * 1024}
    monkeypatch.setattr(environment, "nvml_gpus", lambda: [gpu])
    monkeypatch.setattr(environment, "resolve_device", lambda requested: "cuda")
    runs = [r for r in expand_all([str(ROOT / "scenarios/seed-study/scaling.yaml"),
                                   str(ROOT / "scenarios/seed-study/solo.yaml")])
            if "sharing=mps" not in r.name]
    plans = {p.run.name: p for p in plan(runs, None, None, None, dry_run=True)}
    mistral = plans["solo.tenants=mistral"]
    assert mistral.scenario.tenants[0].dtype == "float16"
    assert 13.0 < mistral.memory["weights_mib"] / 1024 < 14.0  # 7.24 G params x 2 bytes
    assert mistral.skip == ""  # ~14 GiB fits 16 GiB
    assert plans["scaling.tenants=llama.copies=8.sharing=timeslice"].skip.startswith("too big: needs ~")
    assert plans["scaling.tenants=bert.copies=8.sharing=timeslice"].skip == ""


def _run(name: str, **fields) -> Expanded:
    return Expanded(name, parse_scenario(dict(name=name, **fields)), "test")


def test_dry_run_refuses_what_the_host_cannot_hold(monkeypatch):
    """On a 24 GiB machine: mistral-7b in float32 on the CPU (~27 GiB of weights alone), and 200
    copies of bert-base (each process its own interpreter, weights and working set)."""
    monkeypatch.setattr(environment, "host_memory_mib", lambda: {"total_mib": 24576.0, "available_mib": 24576.0})
    runs = [_run("mistral", device="cpu", sharing="exclusive", tenants=[{"name": "m", "model": "mistral-7b"}]),
            _run("crowd", device="cpu", tenants=[{"name": "b", "model": "bert-base", "copies": 200}]),
            _run("pair", device="cpu", tenants=[{"name": "b", "model": "bert-base", "copies": 2}])]
    plans = {p.run.name: p for p in plan(runs, None, None, None, dry_run=True)}
    assert plans["mistral"].skip.startswith("too big for host memory: needs ~")
    assert float(plans["mistral"].skip.split("~")[1].split()[0]) > 27.0  # 7.24 G params x 4 bytes = 27.0 GiB
    assert plans["mistral"].skip.endswith("GiB to run the tenants, 24.0 GiB available")
    assert plans["crowd"].skip.startswith("too big for host memory: needs ~") and plans["pair"].skip == ""
    assert plans["crowd"].memory["host_peak_mib"] > 200 * plans["pair"].memory["host_peak_mib"] / 2 * 0.99


def test_cli_run_refuses_what_the_host_cannot_hold(tmp_path):
    """This machine has less memory than mistral-7b's float32 weights: one line, exit 2, nothing started."""
    if environment.host_memory_mib()["available_mib"] > 40 * 1024:
        pytest.skip("this machine has room for mistral-7b in float32")
    path = write_scenario(tmp_path / "big.yaml", name="big", device="cpu", sharing="exclusive",
                          tenants=[{"name": "m", "model": "mistral-7b"}])
    res = tenancy_here("run", path, "--out", tmp_path / "run")
    assert res.returncode == 2 and res.stderr.startswith("error: big: too big for host memory: needs ~"), res.stderr
    assert res.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_compute_mode_refusals(monkeypatch):
    """EXCLUSIVE_PROCESS allows one CUDA process: time-slicing two would fail at the second tenant;
    MPS (one server process) and a single process are fine. PROHIBITED allows none."""
    cards = machine(1, gpu0={"compute_mode": "exclusive_process", "index": 0})["gpus"]
    monkeypatch.setattr(environment, "nvml_gpus", lambda: cards)
    monkeypatch.setattr(environment, "resolve_device", lambda requested: "cuda")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    pair = [{"name": "a", "model": "bert-base", "size": "tiny"}, {"name": "b", "model": "bert-base", "size": "tiny"}]
    runs = [_run("ts", sharing="timeslice", tenants=pair), _run("one", sharing="timeslice", tenants=pair[:1]),
            _run("st", sharing="streams", tenants=pair)]
    plans = {p.run.name: p for p in plan(runs, None, None, None, dry_run=True)}
    assert "compute mode EXCLUSIVE_PROCESS" in plans["ts"].skip and "second tenant" in plans["ts"].skip
    assert f"nvidia-smi -i {cards[0]['uuid']} -c DEFAULT" in plans["ts"].skip
    assert plans["one"].skip == "" and plans["st"].skip == ""
    cards[0]["compute_mode"] = "prohibited"
    plans = {p.run.name: p for p in plan(runs, None, None, None, dry_run=True)}
    assert all("PROHIBITED" in p.skip for p in plans.values())
    assert devices.current(cards)[0] is cards[0]


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(TenancyError, match="no such scenario file or suite directory"):
        expand_all([str(tmp_path / "missing")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TenancyError, match="no scenario files"):
        expand_all([str(tmp_path / "empty")])
    a = write_scenario(tmp_path / "a.yaml", name="same", **FAST, tenants=[tiny("b", "bert-base")])
    b = write_scenario(tmp_path / "b.yaml", name="same", **FAST, tenants=[tiny("b", "bert-base")])
    with pytest.raises(TenancyError, match=r"run name 'same' is also defined in .*a.yaml"):
        expand_all([str(a), str(b)])


@pytest.mark.slow
def test_a_study_starts_with_an_a_a_control(tmp_path):
    """The control repeats the first run's first tenant alone in both phases, with its protocol;
    `--no-control` leaves it out, and a suite that has a control of its own gets no second one."""
    from tenancy.sweep import with_control

    path = write_scenario(tmp_path / "p.yaml", name="p", **FAST, min_duration_s=1.5, tenants=[
        tiny("bert", "bert-base", copies=2), tiny("gpt2", "distilgpt2")])
    runs = with_control(expand_all([str(path)]))
    control = runs[0].scenario
    assert [r.name for r in runs] == ["control-aa.bert", "p"]
    assert control.mode == "timeslice" and len(control.instances()) == 1
    assert control.tenants[0].model_dump() == {**runs[1].scenario.tenants[0].model_dump(), "copies": 1}
    assert (control.iterations, control.min_duration_s, control.repeats) == (FAST["iterations"], 1.5, 1)
    assert with_control(runs) == runs
    res = tenancy_here("sweep", path, "--dry-run")
    assert res.returncode == 0 and "control-aa.bert" in res.stdout + res.stderr
    res = tenancy_here("sweep", path, "--dry-run", "--no-control")
    assert "control-aa" not in res.stdout + res.stderr


def test_gpu_runs_on_a_machine_without_one_are_skipped_with_the_reason(monkeypatch):
    """A real sweep of device: cuda scenarios on a CPU machine marks them skipped (exit 0), as it
    does MPS without a GPU; a dry run says capacity was not checked."""
    def no_gpu(requested: str) -> str:
        if requested == "cuda":
            raise TenancyError("device 'cuda' requested but no NVIDIA GPU found")
        return "cpu"

    monkeypatch.setattr(environment, "resolve_device", no_gpu)
    runs = [_run("gpu", device="cuda", sharing="mps", tenants=[{"name": "b", "model": "bert-base"}]),
            _run("cpu", device="cpu", tenants=[{"name": "b", "model": "bert-base", "size": "tiny"}])]
    real = {p.run.name: p.skip for p in plan(runs, None, None, None)}
    assert real == {"gpu": "unavailable: device 'cuda' requested but no NVIDIA GPU found", "cpu": ""}
    dry = {p.run.name: p.skip for p in plan(runs, None, None, None, dry_run=True)}
    assert dry["gpu"] == "no GPU here: capacity not checked" and dry["cpu"] == ""
