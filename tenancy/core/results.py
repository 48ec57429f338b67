"""The run directory: the results contract (see results/README.md).

Files are rewritten atomically after every launch, so an interrupted or failed run still
leaves every sample measured so far on disk.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tenancy.core.errors import TenancyError

MANIFEST, SAMPLES, SUMMARY, METRICS = "manifest.json", "samples.parquet", "summary.csv", "metrics.json"
REQUESTS = "requests.parquet"  # serving tenants only
GPU = "gpu.parquet"  # the NVML monitor, on a GPU
REPLICAS, CALIBRATION, REPLICA_STARTS = "replicas.parquet", "calibration.csv", "replica_starts.csv"  # tenancy scale
SCHEMA_VERSION = 2


def utc_now() -> str:
    """Timestamps of manifests and study indexes."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_dir(out: str | Path | None, name: str, root: str | Path = "results") -> Path:
    """Create the run directory; an existing run is never overwritten."""
    if out is not None:
        path = Path(out)
        if path.exists() and any(path.iterdir()):
            raise TenancyError(f"{path}: already exists and is not empty; results are never overwritten")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{name}-{stamp}"
    for i in range(1000):
        path = base if i == 0 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise TenancyError(f"{base}: could not find a free run directory name")


def _atomic(path: Path, write) -> None:
    """Readers see the old file or the new one, never half of it; each writing process has its own
    temporary file (two may write one index), and a write that fails or is interrupted leaves none."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_json(path: Path, data: dict[str, Any]) -> None:
    _atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_table(path: Path, df: pd.DataFrame) -> None:
    if path.suffix == ".parquet":
        _atomic(path, lambda p: df.to_parquet(p, index=False))
    else:
        _atomic(path, lambda p: df.to_csv(p, index=False, float_format="%.6g"))


def write_serving(out: Path, requests: pd.DataFrame, summary: dict[str, Any], manifest: dict[str, Any]) -> None:
    """A `tenancy serve` directory: requests.parquet (one row per request), summary.csv (one
    row), and a manifest with kind `serving`, its status (and the caller's environment), like a run's."""
    out.mkdir(parents=True, exist_ok=True)
    write_table(out / REQUESTS, requests)
    write_table(out / SUMMARY, pd.DataFrame([summary]))
    write_json(out / MANIFEST, {"kind": "serving", "schema_version": SCHEMA_VERSION, "created": utc_now(),
                                **manifest})


def read_run(path: str | Path) -> dict[str, Any]:
    """Load a run directory written by `tenancy run`; one-line error when it is not one."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise TenancyError(f"{path}: not a tenancy run directory (no {MANIFEST})")
    try:
        run = {"path": path, "manifest": json.loads((path / MANIFEST).read_text())}
        run["samples"] = pd.read_parquet(path / SAMPLES) if (path / SAMPLES).exists() else pd.DataFrame()
        run["summary"] = pd.read_csv(path / SUMMARY) if (path / SUMMARY).exists() else pd.DataFrame()
        run["metrics"] = json.loads((path / METRICS).read_text()) if (path / METRICS).exists() else {}
    except (ValueError, OSError) as err:
        raise TenancyError(f"{path}: unreadable run directory: {' '.join(str(err).split())[:200]}") from None
    return run
