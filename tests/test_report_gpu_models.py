"""`tenancy report` never puts runs of two GPU models in one figure: a study measured on A100s and
H100s (a Slurm sweep over a mixed partition) gets one report per model and a warning saying so."""
from __future__ import annotations

import json
from pathlib import Path

from helpers import tenancy_here
from synthetic import write_run
from tenancy.report import load


def _on_gpu(path: Path, model: str) -> Path:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["gpu"] = {"index": 0, "uuid": f"GPU-{model[-4:]}", "name": model, "driver": "550.54.15"}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def _study(root: Path) -> Path:
    study = root / "mixed"
    for i, model in enumerate(["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"]):
        _on_gpu(write_run(study / f"pair{i}", f"pair{i}", [("bert", "bert-base", 1), ("gpt2", "distilgpt2", 1)],
                          {"bert#0": [1.2, 1.3, 1.25], "gpt2#0": [1.1, 1.15, 1.12]}, device="cuda"), model)
    write_run(study / "cpu", "cpu", [("bert", "bert-base", 2)], {"bert#0": [1.5] * 3, "bert#1": [1.6] * 3})
    return study


def test_runs_are_grouped_by_gpu_model(tmp_path):
    runs = load.load([_study(tmp_path)])
    groups = load.by_gpu_model(runs)
    assert {m: sorted(r["name"] for r in rs) for m, rs in groups.items()} == {
        "NVIDIA A100-SXM4-80GB": ["pair0"], "NVIDIA H100 80GB HBM3": ["pair1", "pair2"], "CPU": ["cpu"]}


def test_report_of_a_mixed_study_is_one_report_per_gpu_model(tmp_path):
    study = _study(tmp_path)
    res = tenancy_here("report", study, "-o", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning: runs on 3 GPU models")]
    assert len(warning) == 1 and "NVIDIA H100 80GB HBM3: 2 run(s)" in warning[0]
    listed = {"NVIDIA-A100-SXM4-80GB": ["pair0"], "NVIDIA-H100-80GB-HBM3": ["pair1", "pair2"], "CPU": ["cpu"]}
    for sub, names in listed.items():
        md = (tmp_path / "rep" / sub / "report.md").read_text()
        runs_table = md.split("## Runs", 1)[1].split("\n## ", 1)[0]
        rows = [line for line in runs_table.splitlines() if line.startswith("| mixed/")]
        assert sorted(line.split("|")[1].strip() for line in rows) == [f"mixed/{n}" for n in names]
        assert (tmp_path / "rep" / sub / "index.html").exists()
