"""Which runs a sweep has: scenario files and suite directories expanded (matrices included) into
uniquely named runs, with the study's A/A control first."""
from __future__ import annotations

import fnmatch
from pathlib import Path

from tenancy.core.errors import TenancyError
from tenancy.harness.matrix import Expanded, expand_file
from tenancy.harness.scenario import Scenario, Timeslice

CONTROL_PREFIX = "control"


def scenario_files(sources: list[str]) -> list[Path]:
    """Files named, and every *.yaml / *.yml under the directories named (sorted)."""
    files: list[Path] = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
            if not found:
                raise TenancyError(f"{p}: no scenario files (*.yaml) in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise TenancyError(f"{p}: no such scenario file or suite directory")
    return list(dict.fromkeys(files))


def expand_all(sources: list[str]) -> list[Expanded]:
    runs = [r for f in scenario_files(sources) for r in expand_file(f)]
    seen: dict[str, str] = {}
    for r in runs:
        if r.name in seen:
            raise TenancyError(f"{r.source}: run name {r.name!r} is also defined in {seen[r.name]}; "
                               "names must be unique within a sweep")
        seen[r.name] = r.source
    return runs


def select(runs: list[Expanded], patterns: list[str]) -> list[Expanded]:
    """The runs whose names match any of the shell patterns (all runs when there are none)."""
    if not patterns:
        return runs
    chosen = [r for r in runs if any(fnmatch.fnmatchcase(r.name, p) for p in patterns)]
    if not chosen:
        raise TenancyError(f"--only {' '.join(patterns)}: matches none of the {len(runs)} run(s) "
                           f"(e.g. {', '.join(r.name for r in runs[:3])})")
    return chosen


def with_control(runs: list[Expanded]) -> list[Expanded]:
    """The study's A/A control first: the first tenant of the first run, one copy, whose shared
    phase is the same work alone again, with that run's protocol. Its slowdown interval shows
    what "no effect" looks like on this machine; a study that has a control already gets none."""
    if not runs or any(r.name.startswith(CONTROL_PREFIX) for r in runs):
        return runs
    first = runs[0].scenario
    tenant = first.tenants[0].model_copy(update={"copies": 1})
    name = f"{CONTROL_PREFIX}-aa.{tenant.name}"
    scenario = first.model_copy(update={"name": name, "sharing": Timeslice(), "tenants": [tenant], "autoscale": None,
                                        "description": "A/A control: the same work alone in both phases"})
    return [Expanded(name, Scenario.model_validate(scenario.model_dump()), "(A/A control added by tenancy sweep)",
                     {"control": "aa"}), *runs]
