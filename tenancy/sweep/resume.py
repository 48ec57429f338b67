"""Resume: a run directory that already holds a complete manifest of the same scenario is not run
again (whichever executor or attempt wrote it); anything else there is set aside, never mixed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tenancy.core import results
from tenancy.core.errors import TenancyError
from tenancy.harness.scenario import Scenario, stored_scenario

ASIDE = "_aside"
IGNORED_SCENARIO_KEYS = ("description",)  # not part of what was measured


def _normalised(scenario: dict[str, Any]) -> dict[str, Any]:
    data = stored_scenario(json.loads(json.dumps(scenario, default=str)))
    return {k: v for k, v in data.items() if k not in IGNORED_SCENARIO_KEYS}


def existing_status(run_dir: Path, scenario: Scenario) -> str:
    """`complete` (same scenario, done), `absent`, or why what is there must be set aside."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "absent"
    try:
        manifest = json.loads((run_dir / results.MANIFEST).read_text())
    except (OSError, ValueError):
        return "no readable manifest"
    status = manifest.get("status")
    if status != "complete":
        return f"status {status}"
    changed = _changed(_normalised(manifest.get("scenario") or {}), _normalised(scenario.model_dump()))
    return "complete" if changed is None else f"measured with a different {changed}"


def _changed(old: Any, new: Any, path: str = "") -> str | None:
    """The first field path whose value differs; fields the old run did not record (added to
    the tool since, at their defaults) are not differences."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old:
            if k in new or old[k] is not None:
                found = _changed(old[k], new.get(k), f"{path}.{k}" if path else k)
                if found:
                    return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return next((f for o, n in zip(old, new) if (f := _changed(o, n, path))), None)
    return None if old == new else path


def set_aside(study: Path, run_dir: Path) -> Path:
    """Move an unusable run directory to STUDY/_aside/<name>.<n>; nothing is deleted."""
    aside = study / ASIDE
    aside.mkdir(exist_ok=True)
    for n in range(1, 10000):
        dest = aside / f"{run_dir.name}.{n}"
        if not dest.exists():
            shutil.move(str(run_dir), str(dest))
            return dest
    raise TenancyError(f"{aside}: too many set-aside copies of {run_dir.name}")
