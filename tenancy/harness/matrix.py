"""Scenario matrices: one file, one run per combination of listed values (like a CI matrix).

A scenario file may carry two keys that are not scenario fields; both are resolved here, before
validation, so every expanded run is an ordinary `Scenario`:

    tenant_defaults: {size: tiny, batch: 8}     # merged under every tenant's own fields
    matrix:
      tenants:                                  # a list of tenant sets; replaces `tenants`
        - [{name: bert, model: bert-base}, {name: gpt2, model: distilgpt2}]
        - [{name: bert, model: bert-base, copies: 2}]
      sharing: [timeslice, mps]                 # any top-level scenario field
      tenants.*.batch: [1, 8]                   # a tenant field, for every tenant
      tenants.bert.mps.active_thread_percentage: [50, 100]   # one tenant, nested fields too
      copies: [1, 2, 4]                         # shorthand for tenants.*.copies (any tenant field)

Expansion is the cartesian product in file order (the first key varies slowest). Each run is
named `<name>.<key>=<value>...` with every matrix key, so names are deterministic and the same
run has the same name in every study (a tenant set's value is its tenant names joined by `+`,
with `xN` for N copies).
"""
from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenancy.core.errors import TenancyError
from tenancy.core.validation import read_yaml
from tenancy.harness.scenario import Scenario, Tenant, parse_scenario

_EXTRA_KEYS = ("matrix", "tenant_defaults")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


@dataclass(frozen=True)
class Expanded:
    """One run of a (possibly matrix) scenario file."""

    name: str
    scenario: Scenario  # validated, not yet resolved for the machine
    source: str  # the file it came from
    axes: dict[str, str] = field(default_factory=dict)  # matrix key -> value label


def expand_file(path: str | Path) -> list[Expanded]:
    """Every run a scenario file describes (one for a file without `matrix`)."""
    return expand(read_yaml(path), str(path))


def load_single(path: str | Path) -> Scenario:
    """The scenario of a file that describes exactly one run (what `tenancy run` accepts)."""
    runs = expand_file(path)
    if len(runs) > 1:
        raise TenancyError(f"{path}: a matrix of {len(runs)} runs; run them all with `tenancy sweep {path}`")
    return runs[0].scenario


def expand(data: object, source: str = "<scenario>") -> list[Expanded]:
    if not isinstance(data, dict):
        raise TenancyError(f"{source}: a scenario must be a mapping of fields, got {type(data).__name__}")
    data = dict(data)
    matrix = data.pop("matrix", None) or {}
    defaults = data.pop("tenant_defaults", None) or {}
    if not isinstance(matrix, dict):
        raise TenancyError(f"{source}: matrix: must be a mapping of field path -> list of values")
    if not isinstance(defaults, dict):
        raise TenancyError(f"{source}: tenant_defaults: must be a mapping of tenant fields")
    _check_keys(source, "tenant_defaults", defaults, _tenant_fields())
    axes = [_axis(source, key, values) for key, values in matrix.items()]
    runs: list[Expanded] = []
    for combo in itertools.product(*[a[1] for a in axes]) if axes else [()]:
        run = copy.deepcopy(data)
        labels: dict[str, str] = {}
        for (key, _), value in zip(axes, combo):  # the tenant set first: other keys apply to it
            if key == "tenants":
                run["tenants"] = copy.deepcopy(value)
        if "tenants" in run:  # a missing field stays missing: pydantic says "Field required"
            run["tenants"] = _with_defaults(source, run["tenants"], defaults)
        for (key, _), value in zip(axes, combo):
            labels[key] = _label(value) if key == "tenants" else _label_scalar(value)
            if key != "tenants":
                _apply(source, run, key, copy.deepcopy(value))
        suffix = "".join(f".{_short(k)}={labels[k]}" for k in matrix)
        if isinstance(run.get("name"), str):
            run["name"] += suffix
        where = f"{source} (matrix run {run.get('name')})" if suffix else source
        parsed = parse_scenario(run, where)
        runs.append(Expanded(parsed.name, parsed, source, labels))
    names = [r.name for r in runs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TenancyError(f"{source}: matrix gives two runs the same name {dup[0]!r}; make the values distinct")
    return runs


def _tenant_fields() -> set[str]:
    return set(Tenant.model_fields)


def _scenario_fields() -> set[str]:
    return set(Scenario.model_fields) - {"name", "tenants"}


def _check_keys(source: str, where: str, mapping: dict, allowed: set[str]) -> None:
    for key in mapping:
        if key not in allowed or key == "name":
            raise TenancyError(f"{source}: {where}.{key}: unknown tenant field "
                               f"(tenant fields: {', '.join(sorted(allowed - {'name'}))})")


def _axis(source: str, key: object, values: object) -> tuple[str, list]:
    """Validate one matrix key's shape (not its values: the scenario validation does that)."""
    if not isinstance(key, str) or not key:
        raise TenancyError(f"{source}: matrix: keys must be field paths, got {key!r}")
    where = f"{source}: matrix.{key}"
    if not isinstance(values, list) or not values:
        raise TenancyError(f"{where}: must be a non-empty list of values")
    parts = key.split(".")
    if key == "tenants":
        for i, s in enumerate(values):
            if not isinstance(s, list) or not s or not all(isinstance(t, dict) for t in s):
                raise TenancyError(f"{where}[{i}]: each value must be a non-empty list of tenants (a tenant set)")
    elif parts[0] == "tenants":
        if len(parts) < 3:
            raise TenancyError(f"{where}: use tenants.*.FIELD or tenants.NAME.FIELD")
        if parts[2] not in _tenant_fields() or parts[2] == "name":
            raise TenancyError(f"{where}: unknown tenant field {parts[2]!r}")
        if parts[2] == "mps" and (len(parts) != 4 or parts[3] not in _mps_fields()):
            raise TenancyError(f"{where}: use tenants.{parts[1]}.mps.<{'|'.join(sorted(_mps_fields()))}>")
        if parts[2] != "mps" and len(parts) != 3:
            raise TenancyError(f"{where}: {parts[2]!r} has no sub-fields")
    elif len(parts) == 1 and key in _scenario_fields():
        pass
    elif len(parts) == 1 and key in _tenant_fields() and key != "name":
        pass  # shorthand for tenants.*.<key>
    else:
        known = sorted(_scenario_fields() | {"tenants", "tenants.*.FIELD", "tenants.NAME.FIELD"})
        raise TenancyError(f"{where}: unknown matrix key (use one of: {', '.join(known)})")
    return key, values


def _mps_fields() -> set[str]:
    from tenancy.harness.scenario import TenantMps

    return set(TenantMps.model_fields)


def _with_defaults(source: str, tenants: object, defaults: dict) -> object:
    if not defaults or not isinstance(tenants, list):
        return tenants
    return [{**defaults, **t} if isinstance(t, dict) else t for t in tenants]


def _apply(source: str, run: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if parts[0] != "tenants":
        if key in _scenario_fields():
            run[key] = value
            return
        parts = ["tenants", "*", key]
    tenants = run.get("tenants")
    if not isinstance(tenants, list):
        raise TenancyError(f"{source}: matrix.{key}: the scenario has no tenants list to apply it to")
    who = parts[1]
    chosen = [t for t in tenants if isinstance(t, dict) and (who == "*" or t.get("name") == who)]
    if not chosen:
        names = ", ".join(str(t.get("name")) for t in tenants if isinstance(t, dict))
        raise TenancyError(f"{source}: matrix.{key}: no tenant named {who!r} (tenants: {names})")
    for t in chosen:
        if parts[2] == "mps":
            mps = t.get("mps") or {}
            t["mps"] = {**mps, parts[3]: value} if isinstance(mps, dict) else mps
        else:
            t[parts[2]] = value


def _short(key: str) -> str:
    """The key as it appears in run names: tenants.*.batch -> batch, tenants.bert.seq -> bert.seq."""
    parts = key.split(".")
    if parts[0] == "tenants" and len(parts) > 2:
        return ".".join(parts[2:] if parts[1] == "*" else parts[1:])
    return key


def _label_scalar(value: Any) -> str:
    return _UNSAFE.sub("-", str(value).lower() if isinstance(value, bool) else str(value))


def _label(tenants: list[dict]) -> str:
    """A tenant set's name part: names joined by `+`, `xN` for N copies."""
    parts = []
    for t in tenants:
        name = str(t.get("name", "?"))
        copies = t.get("copies", 1)
        parts.append(f"{name}x{copies}" if copies not in (1, None) else name)
    return _UNSAFE.sub("-", "+".join(parts))
