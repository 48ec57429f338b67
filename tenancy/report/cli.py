"""`tenancy report`: load runs, compute the tables, draw the figures, write the pages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def build(paths: list[str], out: Path, compare: tuple[str, str] | None = None) -> dict[str, Any]:
    """The whole report as plain data, figures already written under out/figures."""
    import pandas as pd

    from tenancy import results
    from tenancy.report import figures, load, stats

    runs = load.load(paths) if paths else []
    figdir = out / "figures"
    notes: list[str] = []
    figs: list[dict[str, Any]] = []
    tenants = stats.tenant_table(runs)
    coloc = stats.colocation_table(runs)
    if runs:
        bad = [r for r in runs if r["status"] != "complete"]
        notes += [f"run {r['name']} ({r['path']}) has status {r['status']}; its data is shown as far as it goes"
                  for r in bad]
        notes += [r["gpu_error"] for r in runs if r.get("gpu_error")]
        figs += figures.latency_distributions(stats.latency_samples(runs), figdir)
        figs.append(figures.pair_matrix(stats.pair_table(tenants, runs), figdir))
        figs.append(figures.colocation_metrics(coloc, figdir))
        figs.append(figures.scaling_curves(stats.scaling_table(tenants, runs), figdir))
        figs.append(figures.sharing_side_by_side(stats.sharing_table(coloc, runs), tenants, figdir))
        figs += figures.timelines(runs, figdir)
    inputs = list(paths)
    if compare:
        a_runs, b_runs = load.load([compare[0]]), load.load([compare[1]])
        la, lb = _label(compare[0], a_runs), _label(compare[1], b_runs)
        if la == lb:
            la, lb = f"A: {la}", f"B: {lb}"
        cmp = stats.compare_table(stats.tenant_table(a_runs), stats.tenant_table(b_runs), la, lb)
        figs.append(figures.comparison(cmp, la, lb, figdir))
        inputs += [f"{compare[0]} (A)", f"{compare[1]} (B)"]
        runs_for_env = runs + a_runs + b_runs
    else:
        runs_for_env = runs
    notes += [f"{f['title']}: skipped, {f['note']}" for f in figs if not f.get("file")]
    runs_table = pd.DataFrame([{**stats.run_meta(r), "shape": _shape(r)} for r in runs]) if runs else pd.DataFrame()
    if not coloc.empty:
        runs_table = runs_table.merge(coloc[["study", "name", "stp", "antt", "fairness"]], on=["study", "name"],
                                      how="left")
    title = "tenancy report: " + ", ".join(Path(p).name for p in (paths or list(compare or ())))
    return {
        "title": title, "inputs": inputs, "generated": results.utc_now(),
        "n_runs": len(runs), "environments": load.environments(runs_for_env), "runs": runs_table,
        "figures": figs, "notes": notes,
        "warnings": [(r["name"], w) for r in runs_for_env for w in r["warnings"]],
        "tables": {"tenants": tenants, "colocation": coloc},
    }


def _label(path: str, runs: list[dict[str, Any]]) -> str:
    """A short name for a compared input: its directory and the GPU (or CPU) it ran on."""
    envs = {(r["manifest"].get("environment") or {}).get("gpus") and r["manifest"]["environment"]["gpus"][0].get("name")
            or "CPU" for r in runs}
    return f"{Path(path).name} ({', '.join(sorted(str(e) for e in envs))})"


def _shape(run: dict[str, Any]) -> str:
    kinds = [k for k in ("pair", "group", "scaling") if run[f"is_{k}"]]
    return "+".join(kinds) or ("solo" if not run["shared"] else "other")


@click.command()
@click.argument("paths", nargs=-1, metavar="RUN_OR_STUDY_DIR...")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Report directory (default <first input>/report).")
@click.option("--compare", nargs=2, metavar="A B", help="Also compare two runs or studies side by side.")
def report(paths: tuple[str, ...], out: str | None, compare: tuple[str, str] | None) -> None:
    """Figures, tables, index.html and report.md from run or study directories (nothing is re-run)."""
    from rich.console import Console

    from tenancy.errors import TenancyError
    from tenancy.report import render

    if not paths and not compare:
        raise TenancyError("give run or study directories, or --compare A B")
    first = Path((paths or compare)[0])
    out_dir = Path(out) if out else first / ("report" if paths else f"compare-{Path(compare[1]).name}")
    rep = build(list(paths), out_dir, compare)
    written = render.write(rep, out_dir)
    console = Console(stderr=True)
    made = [f for f in rep["figures"] if f.get("file")]
    console.print(f"report: {rep['n_runs']} run(s), {len(made)} figure(s) -> {written['html']} and {written['md']}")
    for f in rep["figures"]:
        if not f.get("file"):
            console.print(f"  skipped {f['title']}: {f['note']}", highlight=False)
