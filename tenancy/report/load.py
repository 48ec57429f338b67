"""Find and read run directories (directly, or inside study directories) into plain records.

Reads the results contract only (manifest.json, samples.parquet, summary.csv, metrics.json, and
gpu.parquet where a monitor wrote one); nothing is re-run. A run is identified by its directory,
so two directories of one scenario are two runs (the report pools them as repeats). Each run also
gets the labels the report groups by: its shape (solo, pair, group, scaling, control), its
category (encoders only, decoders only, mixed), `key` (the same for two runs that differ only in
the sharing mode) and `cell` (the same for two runs of the same work under the same mode).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tenancy.core import results
from tenancy.core.errors import TenancyError
from tenancy.harness.scenario import stored_scenario, work_key
from tenancy.models import zoo

CATEGORIES = ("encoders only", "decoders only", "mixed")
_NOT_WORK = ("name", "description", "sharing", "monitor_interval_ms", "repeats", "seed")  # how often / in which order is not what was measured


SUMMARY_COLUMNS = {"phase", "tenant", "copy", "config", "mean_ms"}
SAMPLE_COLUMNS = {"phase", "tenant", "copy", "latency_ms", "in_window", "config", "model"}
_DEPTH = 3  # a folder of studies of runs: results/, results/<study>/, results/<study>/<run>/


@dataclass
class Found:
    """What a set of input folders holds: co-location runs, `tenancy scale` directories (their own
    report) and, one line each, what was skipped and why."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    scales: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def scan(paths: list[str | Path]) -> Found:
    """Every run under `paths` that the report understands; the rest named in `skipped`. A path
    that is not a directory is a one-line error; a directory given twice counts once."""
    found, seen = Found(), set()
    for p in paths:
        top = Path(p)
        if not top.is_dir():
            raise TenancyError(f"{top}: no such run or study directory")
        for d, why in _walk(top, _DEPTH):
            if d.resolve() in seen:
                continue
            seen.add(d.resolve())
            if why:
                found.skipped.append(f"{d}: {why}")
            elif _kind_of(d) == "scale":
                found.scales.append(d)
            else:
                try:
                    found.runs.append(describe(read(d), top.name if d != top else d.parent.name))
                except TenancyError as err:
                    found.skipped.append(str(err))
    ids = [r["id"] for r in found.runs]
    for r in found.runs:  # two directories with one name in different studies: keep the ids apart
        if ids.count(r["id"]) > 1:
            r["id"] = str(r["path"])
    return found


def _walk(path: Path, depth: int) -> list[tuple[Path, str | None]]:
    """Run directories under `path` (reason None) and the folders skipped on the way (with why)."""
    if (path / results.MANIFEST).exists():
        return [(path, None)]
    if (path / "report.md").exists() or (path / "index.html").exists():
        return [(path, "a report (written by tenancy report), not a run")]
    subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    if depth == 0 or not subdirs:
        return [(path, f"not a tenancy run directory (no {results.MANIFEST}) nor a study directory "
                       "(no run directories inside)")]
    return [hit for d in subdirs for hit in _walk(d, depth - 1)]


def _kind_of(path: Path) -> str | None:
    try:
        m = json.loads((path / results.MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return m.get("kind") if isinstance(m, dict) else None


def load(paths: list[str | Path]) -> list[dict[str, Any]]:
    """The co-location runs under `paths`; a one-line error when there is none (naming why)."""
    found = scan(paths)
    if not found.runs:
        raise TenancyError(nothing_to_report(found))
    return found.runs


def nothing_to_report(found: Found) -> str:
    first = found.skipped[0] if found.skipped else "no run directories"
    more = f" (and {len(found.skipped) - 1} more skipped)" if len(found.skipped) > 1 else ""
    return f"nothing to report: {first}{more}"


def read(path: Path) -> dict[str, Any]:
    """One run directory; a one-line error when it is broken."""
    run = results.read_run(path)
    m = run["manifest"]
    if isinstance(m, dict) and m.get("kind") == "serving":
        raise TenancyError(f"{path}: a `tenancy serve` run directory (one engine, no co-location); tenancy "
                           "report reads `tenancy run` and `tenancy sweep` directories: load its requests.parquet "
                           "and summary.csv with pandas")
    if not isinstance(m, dict) or not isinstance(m.get("scenario"), dict) or not m["scenario"].get("tenants"):
        raise TenancyError(f"{path}: broken manifest.json (no scenario with tenants)")
    run["gpu"] = pd.DataFrame()
    if (path / results.GPU).exists():
        try:
            run["gpu"] = pd.read_parquet(path / results.GPU)
        except (OSError, ValueError) as err:
            run["gpu_error"] = f"{path / results.GPU}: unreadable ({' '.join(str(err).split())[:120]})"
    for name, frame, needed in ((results.SAMPLES, run["samples"], SAMPLE_COLUMNS),
                                (results.SUMMARY, run["summary"], SUMMARY_COLUMNS)):
        missing = needed - set(frame.columns)
        if not frame.empty and missing:
            raise TenancyError(f"{path}: {name} lacks column(s) {', '.join(sorted(missing))}")
    return run


def describe(run: dict[str, Any], study: str) -> dict[str, Any]:
    """Add the labels the report groups by; everything else stays as read."""
    m = run["manifest"]
    sc = stored_scenario(m["scenario"])
    tenants = sc["tenants"]
    processes = sum(int(t.get("copies", 1)) for t in tenants)
    configs = {work_key(t) for t in tenants}
    kinds = {_kind(t["model"]) for t in tenants}
    summary = run["summary"]
    shared = not summary.empty and (summary["phase"] == "shared").any()
    category = ("encoders only" if kinds == {"encoder"} else "decoders only" if kinds == {"decoder"} else "mixed")
    work = {k: v for k, v in sc.items() if k not in _NOT_WORK and k != "tenants"}
    work["tenants"] = [{k: v for k, v in t.items() if k != "mps"} for t in tenants]
    work["threads_per_tenant"] = m.get("threads_per_tenant")
    env = m.get("environment") or {}
    work["machine"] = [env.get("host"), env.get("cpu"), env.get("cpu_count"),
                       [g.get("name") for g in env.get("gpus") or [] if isinstance(g, dict)]]  # repeats: one machine
    name = str(sc.get("name", run["path"].name))
    metrics = run["metrics"] if isinstance(run["metrics"], dict) else {}
    run.update(
        id=f"{study}/{run['path'].name}", study=study, name=name, status=m.get("status", "?"),
        sharing=(sc.get("sharing") or {}).get("mode", "?"), device=sc.get("device", "?"), processes=processes,
        label="+".join(f"{t['name']}x{t['copies']}" if t.get("copies", 1) > 1 else t["name"] for t in tenants),
        category=category, shared=bool(shared),
        is_pair=bool(shared and processes == 2),
        is_scaling=bool(shared and len(configs) == 1),
        is_group=bool(shared and processes >= 3 and len(configs) >= 2),
        # A/A: one process whose shared phase is the same work alone again. A `control*` scenario
        # of two tenants (a pair measured twice) is a pair: its effect is real, not "no effect".
        is_control=bool(shared and processes == 1),
        key=json.dumps(work, sort_keys=True, default=str),
        cell=json.dumps([sc.get("sharing"), work], sort_keys=True, default=str),  # the mode and its settings
        schema=int(m.get("schema_version") or 1),
        has_intervals="ci_basis" in metrics,
        gpu_model=gpu_model(m, str(sc.get("device", "?"))),
        threads_per_tenant=m.get("threads_per_tenant"),
        cpu_count=(m.get("environment") or {}).get("cpu_count"),
        metrics=metrics,
        warnings=list(m.get("warnings") or []) + [w for w in metrics.get("warnings") or []
                                                  if w not in (m.get("warnings") or [])],
    )
    return run


def gpu_model(manifest: dict[str, Any], device: str) -> str:
    """The GPU model a run measured on ("CPU" for a CPU run): the run's own GPU, else (older
    manifests) the machine's first."""
    if device != "cuda":
        return "CPU"
    card = manifest.get("gpu") or next(iter((manifest.get("environment") or {}).get("gpus") or []), None) or {}
    return str(card.get("name") or "unknown GPU")


def by_gpu_model(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Runs grouped by the GPU model they measured on: numbers of two models never share a figure."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(r["gpu_model"], []).append(r)
    return groups


def _kind(model: str) -> str:
    try:
        return zoo.get(model).kind
    except ValueError:
        return "unknown"


def model_order(present=None) -> list[str]:
    """Models in the zoo's order (encoders first, then decoders by size); given the models
    `present`, those of them, folder models after the zoo's, by name."""
    if present is None:
        return list(zoo.ZOO)
    present = set(present)
    return [m for m in zoo.ZOO if m in present] + sorted(present - set(zoo.ZOO))


def environments(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct machines the runs were measured on, with how many runs each."""
    seen: dict[str, dict[str, Any]] = {}
    for r in runs:
        env = r["manifest"].get("environment") or {}
        gpus = env.get("gpus") or []
        desc = {
            "host": env.get("host"), "cpu": env.get("cpu"), "cpu_count": env.get("cpu_count"),
            "gpu": ", ".join(f"{g.get('name')} ({g.get('memory_total_mib', 0) / 1024:.0f} GiB, driver "
                             f"{g.get('driver')})" for g in gpus) or "none",
            "device": r["device"], "torch": env.get("torch"), "transformers": env.get("transformers"),
            "python": env.get("python"), "tenancy": env.get("tenancy"), "git_commit": env.get("git_commit"),
        }
        k = json.dumps(desc, sort_keys=True, default=str)
        seen.setdefault(k, {**desc, "study": r["study"], "runs": 0})["runs"] += 1
    return list(seen.values())
