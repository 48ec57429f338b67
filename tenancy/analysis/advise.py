"""`tenancy advise`: a placement of tenants on N GPUs, with a sharing mode per GPU, from a study.

Why: users measure co-location to decide which models to pack together. Each candidate GPU (a
group of tenant copies and a sharing mode) gets its members' slowdowns from the study's measured
tenant sets, or, for groups never measured, from the roofline prediction (tenancy/analysis/predict.py),
marked as such. A group is allowed only when every member's expected latency (solo mean x the
upper end of its slowdown interval) meets its SLO. An exact set-partitioning MILP, solved with
scipy.optimize.milp (HiGHS), then picks the groups: every copy placed once, at most N GPUs,
maximising STP (the sum of normalised progress) or, with `--objective gpus`, using the fewest
GPUs (STP breaks ties).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tenancy.core.errors import TenancyError

SOLVER = "scipy.optimize.milp (HiGHS branch and bound), exact set partitioning"
Predictor = Callable[[str, tuple[str, ...]], "list[float] | None"]  # (mode, member names) -> slowdowns


@dataclass
class Measured:
    """A tenant set measured under one sharing mode: per member name its worst copy's slowdown
    (point, upper end of the 95% interval) and the runs behind it."""

    slowdown: dict[str, tuple[float, float]]
    runs: str


@dataclass
class Evidence:
    solo_ms: dict[str, float]  # tenant name -> solo mean latency
    measured: dict[tuple[str, tuple[str, ...]], Measured]  # (mode, sorted member names) -> measurement
    modes: list[str]  # sharing modes the study measured
    predict: Predictor | None = None  # roofline prediction for unmeasured groups
    notes: list[str] = field(default_factory=list)


def _group(ev: Evidence, names: tuple[str, ...], mode: str) -> list[dict[str, Any]] | None:
    """Per member: slowdown point and upper end, and where they come from; None when unknown."""
    if len(names) == 1:
        return [{"slowdown": 1.0, "slowdown_hi": 1.0, "source": "alone", "evidence": "its solo measurement"}]
    key = (mode, tuple(sorted(names)))
    if key in ev.measured:
        m = ev.measured[key]  # below 1 is noise or an artefact, never a gain: counted as 1
        return [{"slowdown": max(1.0, m.slowdown[n][0]), "slowdown_hi": max(1.0, m.slowdown[n][1]),
                 "source": "measured",
                 "evidence": f"measured: {m.runs}"} for n in names]
    pred = ev.predict(mode, names) if ev.predict else None
    if pred is None:
        return None
    return [{"slowdown": p, "slowdown_hi": p, "source": "predicted",
             "evidence": "roofline prediction (solo demands, shared resources): not measured"} for p in pred]


def _check_slos(ev: Evidence, names: list[str], slos: dict[str, float]) -> None:
    for name, slo in slos.items():
        if name not in ev.solo_ms:
            raise TenancyError(f"--slo {name}: no tenant of that name in the study; known: {', '.join(ev.solo_ms)}")
        if name in names and ev.solo_ms[name] > slo:
            raise TenancyError(f"impossible SLO: {name} needs {slo:g} ms but takes {ev.solo_ms[name]:.3g} ms alone "
                               "(its solo mean): no placement can meet it")


def plan(ev: Evidence, copies: dict[str, int], gpus: int, slos: dict[str, float] | None = None,
         objective: str = "stp", max_per_gpu: int = 4) -> dict[str, Any]:
    """The best placement of `copies` (tenant name -> copies) on at most `gpus` GPUs, as plain data."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    slos = slos or {}
    unknown = [n for n in copies if n not in ev.solo_ms]
    if unknown:
        raise TenancyError(f"unknown tenant {unknown[0]!r}: the study measured {', '.join(ev.solo_ms)} alone")
    instances = [(n, c) for n, k in copies.items() for c in range(k)]
    _check_slos(ev, [n for n, _ in instances], slos)
    cands = []
    for size in range(1, min(max_per_gpu, len(instances)) + 1):
        for idx in itertools.combinations(range(len(instances)), size):
            names = tuple(instances[i][0] for i in idx)
            for mode in (["exclusive"] if size == 1 else ev.modes):
                members = _group(ev, names, mode)
                if members is None:
                    continue
                for i, m in zip(idx, members):
                    m.update(tenant=instances[i][0], copy=instances[i][1], solo_ms=ev.solo_ms[instances[i][0]])
                    m["expected_ms"] = m["solo_ms"] * m["slowdown"]
                    m["expected_ms_hi"] = m["solo_ms"] * m["slowdown_hi"]
                    m["slo_ms"] = slos.get(m["tenant"])
                if all(m["slo_ms"] is None or m["expected_ms_hi"] <= m["slo_ms"] for m in members):
                    cands.append((idx, mode, members, sum(1.0 / m["slowdown"] for m in members)))
    n = len(instances)
    if not cands or n == 0:
        raise TenancyError("nothing to place" if n == 0 else "no group of tenants is known to meet the SLOs")
    a = np.zeros((n + 1, len(cands)))
    for j, (idx, _, _, _) in enumerate(cands):
        a[list(idx), j] = 1
    a[n, :] = 1  # GPUs used
    stp = np.array([c[3] for c in cands])
    cost = -stp if objective == "stp" else 1.0 - stp / (n + 1)  # fewest GPUs; STP (< n + 1) breaks ties
    res = milp(cost, integrality=np.ones(len(cands)), bounds=Bounds(0, 1),
               constraints=LinearConstraint(a, np.r_[np.ones(n), 0], np.r_[np.ones(n), gpus]))
    if res.x is None:
        raise TenancyError(f"no placement of {n} tenant copies on {gpus} GPU(s) (at most {max_per_gpu} per GPU) meets "
                           f"every SLO with the evidence the study has ({res.message.split('(')[0].strip()})")
    chosen = [cands[j] for j in np.flatnonzero(res.x > 0.5)]
    placed = [{"gpu": g, "sharing": mode, "stp": s, "tenants": members}
              for g, (_, mode, members, s) in enumerate(sorted(chosen, key=lambda c: -len(c[0])))]
    return {"solver": SOLVER, "objective": objective, "gpus_available": gpus, "gpus_used": len(placed),
            "stp": float(sum(p["stp"] for p in placed)), "tenant_copies": n, "max_per_gpu": max_per_gpu,
            "gpus": placed, "slos_ms": slos, "notes": ev.notes,
            "slo_rule": "expected latency = solo mean x the upper end of the slowdown's 95% interval (point "
                        "for predictions) must not exceed the SLO"}


def format_plan(p: dict[str, Any]) -> str:
    """The plan for a terminal: one block per GPU, one line per tenant copy with its evidence."""
    lines = [f"plan: {p['tenant_copies']} tenant copies on {p['gpus_used']} of {p['gpus_available']} GPU(s), "
             f"STP {p['stp']:.2f} (objective: {p['objective']}); solver: {p['solver']}"]
    for g in p["gpus"]:
        lines.append(f"GPU {g['gpu']}: {g['sharing']}, STP {g['stp']:.2f}")
        for m in g["tenants"]:
            slo = f", SLO {m['slo_ms']:g} ms" if m["slo_ms"] is not None else ""
            hi = f" (up to {m['expected_ms_hi']:.3g})" if m["expected_ms_hi"] > m["expected_ms"] * 1.0005 else ""
            lines.append(f"  {m['tenant']}#{m['copy']}: expected {m['expected_ms']:.3g} ms{hi}, slowdown "
                         f"{m['slowdown']:.2f}{slo}; {m['evidence']}")
    lines += [f"note: {n}" for n in p["notes"]] + [f"rule: {p['slo_rule']}"]
    return "\n".join(lines)


def parse_pairs(items: tuple[str, ...], what: str, rate_ok: bool = False) -> dict[str, Any]:
    """`name=value` options: ms for --slo, copies (or `R/s`, a rate) for --demand."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            if rate_ok and value.endswith("/s"):
                out[name] = ("rate", float(value[:-2]))
            else:
                v = float(value) if what == "--slo" else int(value)
                if not math.isfinite(v) or v <= 0:
                    raise ValueError
                out[name] = v
        except ValueError:
            form = "tenant=copies or tenant=rate/s" if rate_ok else "tenant=milliseconds"
            raise TenancyError(f"{what} {item!r}: expected {form} with a positive number") from None
    return out
