"""`tenancy advise STUDY --gpus N`: the study's evidence (solo latencies, measured tenant sets, the
roofline for the rest) handed to tenancy.analysis.advise.plan, printed or as JSON."""
from __future__ import annotations

import json
import math
from typing import Any

import click

from tenancy.analysis.advise import Evidence, Measured, format_plan, parse_pairs, plan


def evidence(paths: list[str]) -> Evidence:
    """What a study measured, as the advisor needs it (report tables, nothing re-run)."""
    from tenancy.analysis import predict
    from tenancy.gpu.peaks import Cache
    from tenancy.report import load, roofline, stats

    runs = load.load(paths)
    _, slowdowns = stats.cell_tables(runs)
    tenants = stats.tenant_table(runs)
    solo = tenants[tenants["phase"] == "solo"] if not tenants.empty else tenants
    solo_ms = {str(k): float(v) for k, v in solo.groupby("tenant", sort=False)["mean_ms"].mean().items()}
    notes = [f"{t}: {n} different works share this name; their solo means are pooled"
             for t, n in solo.groupby("tenant")["config"].nunique().items() if n > 1] if not solo.empty else []
    measured: dict[tuple[str, tuple[str, ...]], Measured] = {}
    if not slowdowns.empty:
        for _, g in slowdowns[slowdowns["kind"] != "control"].groupby("cell", sort=False):
            key = (str(g["sharing"].iloc[0]), tuple(sorted(g["tenant"])))
            worst = {}
            for t, h in g.groupby("tenant"):
                hi = h["hi"].max()
                worst[t] = (float(h["slowdown"].max()), float(hi if math.isfinite(hi) else h["slowdown"].max()))
            old = measured.get(key)
            if old is None or max(v[1] for v in worst.values()) > max(v[1] for v in old.slowdown.values()):
                measured[key] = Measured(worst, str(g["runs"].iloc[0]))
    modes = sorted({m for m, _ in measured}) or ["timeslice"]
    cache, state = Cache(), {}
    works = {k: v for r in runs for k, v in roofline.works(r).items()}

    def predictor(mode: str, names: tuple[str, ...]) -> list[float] | None:
        if "peaks" not in state:  # measured (or read) once, only when a group needs a prediction
            state["peaks"] = next(((r, p, src) for r in runs for p, src in [roofline.run_peaks(r, cache)] if p), None)
            if state["peaks"]:
                notes.append(f"roofline predictions use peaks {state['peaks'][2]} ({state['peaks'][0]['id']})")
        if state["peaks"] is None:
            return None
        run, pk, _ = state["peaks"]
        dem = [roofline.tenant_demand(run, mode, works.get(n), solo_ms[n], pk) for n in names]
        return None if any(d is None for d in dem) else predict.slowdowns(dem)

    return Evidence(solo_ms=solo_ms, measured=measured, modes=modes, predict=predictor, notes=notes)


def copies_for(demand: dict[str, Any], ev: Evidence) -> tuple[dict[str, int], list[str]]:
    """Copies per tenant: given, or from a rate (iterations/s) at solo speed (Little's law)."""
    copies, notes = {}, []
    for name, v in (demand or {n: 1 for n in ev.solo_ms}).items():
        if isinstance(v, tuple):
            if name not in ev.solo_ms:
                copies[name] = 1  # plan() names the unknown tenant
                continue
            copies[name] = max(1, math.ceil(v[1] * ev.solo_ms[name] / 1000.0))
            notes.append(f"{name}: {v[1]:g} iterations/s at its solo {ev.solo_ms[name]:.3g} ms needs "
                         f"{copies[name]} cop{'y' if copies[name] == 1 else 'ies'} (more if slowed by neighbours)")
        else:
            copies[name] = v
    return copies, notes


@click.command("advise")
@click.argument("study", nargs=-1, required=True, metavar="STUDY_DIR...")
@click.option("--gpus", type=click.IntRange(min=1), required=True, help="GPUs to place the tenants on.")
@click.option("--slo", multiple=True, metavar="TENANT=MS", help="Latency SLO of a tenant's iteration (repeatable).")
@click.option("--demand", multiple=True, metavar="TENANT=N|R/s",
              help="Copies of a tenant, or a rate in iterations/s (repeatable; default: one copy of every tenant).")
@click.option("--objective", type=click.Choice(["stp", "gpus"]), default="stp", show_default=True,
              help="Maximise STP, or use the fewest GPUs.")
@click.option("--max-per-gpu", type=click.IntRange(min=1, max=8), default=4, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (for scripts).")
def advise(study: tuple[str, ...], gpus: int, slo: tuple[str, ...], demand: tuple[str, ...], objective: str,
           max_per_gpu: int, as_json: bool) -> None:
    """Propose tenants per GPU and a sharing mode per GPU from a study's measurements."""
    slos = parse_pairs(slo, "--slo")
    wanted = parse_pairs(demand, "--demand", rate_ok=True)
    ev = evidence(list(study))
    copies, notes = copies_for(wanted, ev)
    ev.notes += notes
    p = plan(ev, copies, gpus, slos, objective, max_per_gpu)
    click.echo(json.dumps(p, indent=2, default=str) if as_json else format_plan(p))
