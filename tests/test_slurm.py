"""`tenancy sweep --executor slurm` on a real one-node Slurm cluster (tools/slurm_local.sh): every
run completes with the results contract of a local sweep, and an interrupted study resumes
without running again what finished (`--no-wait`, then `--status`)."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers import tenancy, tenancy_here

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tools" / "slurm_local.sh"
SMALL = ("--iterations", "3", "--warmup", "0", "--repeats", "1")
RUNS = ("control-aa.bert", "pair.tenants=bert+gpt2.sharing=timeslice")
ONLY = ("--only", "control*", "--only", "pair.tenants=bert+gpt2*")


def _cannot(why: str) -> None:
    """Skip, except where CI asked for this test to run (.ci/run sets TENANCY_REQUIRE_SLURM)."""
    if os.environ.get("TENANCY_REQUIRE_SLURM"):
        pytest.fail(f"TENANCY_REQUIRE_SLURM is set but {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def cluster():
    if importlib.util.find_spec("submitit") is None:
        _cannot("submitit is not installed (pip install 'tenancy[slurm]')")
    if os.geteuid() != 0:
        _cannot("the local Slurm cluster needs root (munged, slurmd)")
    # a test run never installs system packages: `up` would apt-get what is missing
    missing = [c for c in ("sbatch", "slurmctld", "slurmd", "munged") if not shutil.which(c)]
    if missing:
        _cannot(f"Slurm is not installed ({', '.join(missing)} missing; tools/slurm_local.sh install)")
    up = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        _cannot(f"tools/slurm_local.sh up failed: {' '.join(up.stderr.strip().splitlines()[-1:])}")
    yield
    subprocess.run([str(SCRIPT), "down"], capture_output=True, text=True, timeout=120)


def _runs(study: Path) -> pd.DataFrame:
    return pd.read_csv(study / "sweep.csv").set_index("name")


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _contract(run_dir: Path) -> dict:
    """What the results contract fixes of a run directory: files, columns, keys."""
    return {"files": sorted(p.name for p in run_dir.iterdir()),
            "samples": list(pd.read_parquet(run_dir / "samples.parquet").dtypes.astype(str).items()),
            "summary": list(pd.read_csv(run_dir / "summary.csv").columns),
            "metrics": sorted(json.loads((run_dir / "metrics.json").read_text())),
            "manifest": sorted(_manifest(run_dir))}


def test_a_study_on_slurm_completes_and_resumes(cluster, tmp_path):
    study = tmp_path / "slurm"
    t0 = time.monotonic()
    res = tenancy("sweep", ROOT / "scenarios/cpu/pairs.yaml", "--executor", "slurm", *ONLY, *SMALL,
                  "--out", study, timeout=900)
    assert res.returncode == 0, res.stderr
    print(f"slurm sweep of {len(RUNS)} runs: {time.monotonic() - t0:.0f} s")
    idx = _runs(study)
    assert sorted(idx.index) == sorted(RUNS) and (idx.status == "complete").all(), idx
    for name in RUNS:
        m = _manifest(study / name)
        assert m["status"] == "complete"
        slurm = m["environment"]["slurm"]
        assert slurm["job_id"] and slurm["id"] == idx.loc[name, "slurm_job_id"]
        assert m["environment"]["node"] == idx.loc[name, "node"]
        assert Path(idx.loc[name, "log"]).is_file()  # the task's Slurm log
    jobs = json.loads((study / "_slurm" / "jobs.json").read_text())
    assert set(jobs) == set(RUNS)

    # The same control measured by the local executor: the same results contract.
    local = tmp_path / "local"
    res = tenancy("sweep", ROOT / "scenarios/cpu/pairs.yaml", "--only", "control*", *SMALL, "--out", local,
                  timeout=600)
    assert res.returncode == 0, res.stderr
    assert _contract(local / RUNS[0]) == _contract(study / RUNS[0])
    assert set(_runs(local).columns) <= set(idx.columns)

    # Interrupted: the control's run was cut short. Resubmitted without waiting, only it runs again.
    m = _manifest(study / RUNS[0])
    m["status"] = "interrupted"
    (study / RUNS[0] / "manifest.json").write_text(json.dumps(m))
    kept = (study / RUNS[1] / "samples.parquet").stat().st_mtime_ns
    res = tenancy("sweep", ROOT / "scenarios/cpu/pairs.yaml", "--executor", "slurm", *ONLY, *SMALL,
                  "--out", study, "--no-wait", timeout=300)
    assert res.returncode == 0, res.stderr
    assert "already complete" in res.stderr and "--status" in res.stderr
    deadline = time.monotonic() + 600  # polled as a user would, with --status (in this process)
    while True:
        status = tenancy_here("sweep", "--status", study)
        idx = _runs(study)
        if idx.loc[RUNS[0], "status"] in ("complete", "failed") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status.returncode == 0, status.stderr
    assert idx.loc[RUNS[0], "status"] == "complete" and RUNS[0] in status.stdout
    assert _manifest(study / RUNS[0])["status"] == "complete"
    assert (study / RUNS[1] / "samples.parquet").stat().st_mtime_ns == kept  # finished: not run again
    assert _manifest(study / "_aside" / f"{RUNS[0]}.1")["status"] == "interrupted"  # kept, not mixed
    again = json.loads((study / "_slurm" / "jobs.json").read_text())
    assert again[RUNS[1]] == jobs[RUNS[1]] and again[RUNS[0]]["job_id"] != jobs[RUNS[0]]["job_id"]
