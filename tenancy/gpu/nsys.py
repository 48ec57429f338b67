"""`tenancy run --nsys`: the same run again, under Nsight Systems, with the report in the run directory.

The CLI creates the run directory, then starts `nsys profile` on `python -m tenancy run ... --out
<that directory>` with MARKER_ENV naming it (so the inner run writes there and does not profile
itself again). nsys traces CUDA, NVTX and OS runtime calls of the whole process tree (spawned
tenants, the streams process, the monitor; our MPS daemon is started without nsys' injection
environment, see gpu/mps_daemon.py). Afterwards `nsys stats` exports the kernel summary
(cuda_gpu_kern_sum) as nsys/kernels.csv; the manifest's `nsys` block names both files.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tenancy.core.errors import TenancyError

NSYS_ENV = "TENANCY_NSYS"  # path or name of nsys (tests: a stand-in)
MARKER_ENV = "TENANCY_UNDER_NSYS"  # set in the profiled run: the run directory it must write to
REPORT = "nsys/profile"  # nsys adds .nsys-rep
KERNELS = "nsys/kernels.csv"
TRACE = "cuda,nvtx,osrt"
GRACE_S = 120.0


def find_nsys() -> str:
    name = os.environ.get(NSYS_ENV) or "nsys"
    path = shutil.which(name)
    if path is None:
        raise TenancyError(f"--nsys needs Nsight Systems: install it (https://developer.nvidia.com/nsight-systems) "
                           f"and put `nsys` on PATH ({name} not found)")
    return path


def profile_command(nsys: str, report: Path, command: list[str]) -> list[str]:
    """`nsys profile` around `command`: spawned processes exec, and nsys traces children that exec
    by default (--trace-fork-before-exec matters only for fork without exec, and relies on
    behaviour POSIX leaves undefined, so it is not used)."""
    return [nsys, "profile", f"--trace={TRACE}", "--sample=none",
            "--cpuctxsw=none", "--force-overwrite=true", f"--output={report}", *command]


def stats_command(nsys: str, rep_file: Path, prefix: Path) -> list[str]:
    return [nsys, "stats", "--report=cuda_gpu_kern_sum", "--format=csv", "--force-export=true",
            f"--output={prefix}", str(rep_file)]


def inner_run_command(scenario_file: str, run_dir: Path, options: list[str]) -> list[str]:
    """The profiled run: this same `tenancy run`, writing into `run_dir`."""
    return [sys.executable, "-m", "tenancy", "run", scenario_file, "--out", str(run_dir), *options]


def is_profiled_run(out: str | None) -> bool:
    """True inside the run that nsys profiles, for its own run directory."""
    marker = os.environ.get(MARKER_ENV)
    return bool(marker and out and Path(out).resolve() == Path(marker).resolve())


def profile_run(nsys: str, scenario_file: str, run_dir: Path, options: list[str]) -> int:
    """Run under nsys, export the kernel summary, record both in the manifest; the run's exit code."""
    run_dir = run_dir.resolve()
    (run_dir / "nsys").mkdir(parents=True, exist_ok=True)
    cmd = profile_command(nsys, run_dir / REPORT, inner_run_command(scenario_file, run_dir, options))
    info: dict[str, Any] = {"command": cmd}
    code = _wait(subprocess.Popen(cmd, env={**os.environ, MARKER_ENV: str(run_dir)}))
    info["exit"] = code
    rep_file = run_dir / (REPORT + ".nsys-rep")
    if rep_file.exists():
        info["report"] = REPORT + ".nsys-rep"
        info.update(export_kernels(nsys, rep_file, run_dir))
    else:
        info["error"] = "nsys wrote no report"
    _record(run_dir, info)
    return code


def export_kernels(nsys: str, rep_file: Path, run_dir: Path) -> dict[str, Any]:
    """nsys stats cuda_gpu_kern_sum -> nsys/kernels.csv; a failure is recorded, not raised."""
    prefix = run_dir / "nsys" / "stats"
    try:
        proc = subprocess.run(stats_command(nsys, rep_file, prefix), capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as err:
        return {"kernels_error": f"nsys stats failed: {err}"}
    found = sorted((run_dir / "nsys").glob("stats*cuda_gpu_kern_sum*.csv"))
    if proc.returncode != 0 or not found:
        why = " ".join((proc.stderr or proc.stdout).split())[:300] or "no CSV written"
        return {"kernels_error": f"nsys stats exit {proc.returncode}: {why}"}
    os.replace(found[0], run_dir / KERNELS)
    return {"kernels": KERNELS}


def _wait(proc: subprocess.Popen) -> int:
    """Wait for nsys; on Ctrl-C / SIGTERM pass it on once and give the run time to save."""
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            code = proc.wait(timeout=1)
            return code if code else 130
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:
            continue
    proc.terminate()
    proc.wait(30)
    return 130


def _record(run_dir: Path, info: dict[str, Any]) -> None:
    import json

    from tenancy.core import results

    path = run_dir / results.MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        manifest = {"status": "failed", "error": "the profiled run wrote no manifest"}
    manifest["nsys"] = info
    results.write_json(path, manifest)
