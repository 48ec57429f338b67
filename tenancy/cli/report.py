"""`tenancy report`: load runs, compute the tables, write the findings and figures, write the pages."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def analyse(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every table and the findings of one set of runs (plain data, no figures)."""
    from tenancy.report import findings, stats, tables

    cells, slowdowns = stats.cell_tables(runs)
    pairs = tables.pair_table(slowdowns, cells)
    scaling = tables.scaling_table(cells, slowdowns, runs)
    return {"tenants": stats.tenant_table(runs), "cells": cells, "slowdowns": slowdowns, "pairs": pairs,
            "matrix": tables.pair_matrix_table(pairs), "scaling": scaling, "sharing": tables.sharing_table(cells),
            "findings": findings.build(cells, slowdowns, scaling)}


def build(paths: list[str], out: Path, compare: list[str] | None = None,
          runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The whole report as plain data, figures already written under out/figures. With `compare`
    (two or more inputs) it is a comparison of those inputs instead; `runs`: already loaded."""
    from tenancy.core import results
    from tenancy.report import load

    if compare:
        return _build_compare(compare, out)
    runs = load.load(paths) if runs is None else runs
    a = analyse(runs)
    figs = _figures(runs, a, out / "figures")
    notes = _notes(runs) + [f"{f['title']}: skipped, {f['note']}" for f in figs if not f.get("file")]
    return {
        "title": "tenancy report: " + ", ".join(Path(p).name for p in paths), "inputs": list(paths),
        "generated": results.utc_now(), "n_runs": len(runs), "environments": load.environments(runs),
        "runs": _runs_table(runs), "findings": a["findings"], "figures": figs, "notes": notes,
        "warnings": [(r["id"], w) for r in runs for w in r["warnings"]],
        "tables": {"tenants": a["tenants"], "cells": a["cells"].drop(columns=["key"], errors="ignore"),
                   "slowdowns": a["slowdowns"]},
    }


def _figures(runs: list[dict[str, Any]], a: dict[str, Any], figdir: Path) -> list[dict[str, Any]]:
    from tenancy.report import figures, tables, timeline_figures

    figs = figures.latency_distributions(tables.latency_samples(runs), figdir)
    figs.append(figures.pair_matrix(a["matrix"], figdir))
    figs.append(figures.colocation_metrics(a["cells"], figdir))
    figs.append(figures.scaling_curves(a["scaling"], figdir))
    figs.append(figures.sharing_side_by_side(a["sharing"], figdir))
    figs += timeline_figures.timelines(runs, figdir)
    return figs + _roofline_figures(runs, a, figdir)


def _roofline_figures(runs: list[dict[str, Any]], a: dict[str, Any], figdir: Path) -> list[dict[str, Any]]:
    """The roofline and predicted-against-measured figures; peaks measured once per report when a
    CPU run predates them."""
    from tenancy.gpu.peaks import Cache
    from tenancy.report import roofline, roofline_figures

    cache = Cache()
    return [roofline_figures.roofline_plot(roofline.roofline_table(runs, cache), figdir),
            roofline_figures.prediction_plot(roofline.prediction_table(runs, a["slowdowns"], cache), figdir)]


def _notes(runs: list[dict[str, Any]]) -> list[str]:
    notes = [f"run {r['id']} has status {r['status']}; its data is shown as far as it goes"
             for r in runs if r["status"] != "complete"]
    old = [r["id"] for r in runs if not r["has_intervals"]]
    if old:
        notes.append(f"{len(old)} run director{'y' if len(old) == 1 else 'ies'} predate per-repeat results "
                     f"(schema 1: no intervals, verdicts or noise floors): {', '.join(old[:5])}"
                     + (" …" if len(old) > 5 else ""))
    return notes + [r["gpu_error"] for r in runs if r.get("gpu_error")]


def _build_compare(inputs: list[str], out: Path) -> dict[str, Any]:
    import pandas as pd

    from tenancy.core import results
    from tenancy.report import figures, findings, load, tables

    loaded = [load.load([p]) for p in inputs]
    labels = _labels(inputs, loaded)
    analyses = [analyse(runs) for runs in loaded]
    cmp = tables.compare_table([(lab, a["slowdowns"]) for lab, a in zip(labels, analyses)])
    figs = [figures.comparison(cmp, labels, out / "figures")]
    found = findings.compare(cmp, labels) + [{**f, "text": f"[{lab}] {f['text']}"}
                                             for lab, a in zip(labels, analyses) for f in a["findings"]]
    all_runs = [r for runs in loaded for r in runs]
    return {
        "title": "tenancy comparison: " + ", ".join(labels), "inputs": list(inputs),
        "generated": results.utc_now(), "n_runs": len(all_runs), "environments": load.environments(all_runs),
        "runs": _runs_table(all_runs), "findings": found, "figures": figs,
        "notes": _notes(all_runs) + [f"{f['title']}: skipped, {f['note']}" for f in figs if not f.get("file")],
        "warnings": [(r["id"], w) for r in all_runs for w in r["warnings"]],
        "tables": {"slowdowns": pd.concat([a["slowdowns"].assign(input=lab) for lab, a in zip(labels, analyses)],
                                          ignore_index=True)},
    }


def _labels(paths: list[str], loaded: list[list[dict[str, Any]]]) -> list[str]:
    """A short, distinct name per compared input: its directory and the GPU (or CPU) it ran on."""
    out = []
    for p, runs in zip(paths, loaded):
        envs = {((r["manifest"].get("environment") or {}).get("gpus") or [{}])[0].get("name") or "CPU" for r in runs}
        out.append(f"{Path(p).name} ({', '.join(sorted(str(e) for e in envs))})")
    if len(set(out)) < len(out):
        out = [f"{chr(65 + i) if i < 26 else i}: {lab}" for i, lab in enumerate(out)]
    return out


def _runs_table(runs: list[dict[str, Any]]) -> Any:
    import pandas as pd

    from tenancy.report import stats

    rows = []
    for r in runs:
        m = r["metrics"]
        rows.append({**stats.run_meta(r), "kind": stats.kind(r) if r["shared"] else "solo", "schema": r["schema"],
                     "n_repeats": m.get("n_repeats") or len(m.get("per_repeat") or []) or
                     r["manifest"]["scenario"].get("repeats"), "ci_basis": m.get("ci_basis", "none"),
                     "stp": stats.num(m.get("stp")), "antt": stats.num(m.get("antt")),
                     "fairness": stats.num(m.get("fairness"))})
    return pd.DataFrame(rows)


@click.command()
@click.argument("paths", nargs=-1, metavar="RUN_OR_STUDY_DIR...")
@click.option("-o", "--out", type=click.Path(file_okay=False), help="Report directory (default <first input>/report).")
@click.option("--compare", multiple=True, metavar="STUDY",
              help="Compare two or more runs or studies: `--compare A B C` (every input given is compared, the "
                   "first is the reference) or `--compare A --compare B`.")
def report(paths: tuple[str, ...], out: str | None, compare: tuple[str, ...]) -> None:
    """Findings, figures, tables, index.html and report.md from run or study directories (nothing is re-run)."""
    from rich.console import Console

    from tenancy.core.errors import TenancyError

    inputs = list(compare) + list(paths) if compare else list(paths)
    if not inputs:
        raise TenancyError("give run or study directories, or --compare A B [C ...]")
    if compare and len(inputs) < 2:
        raise TenancyError("--compare needs two or more runs or studies")
    first = Path(inputs[0])
    out_dir = Path(out) if out else first / ("report" if not compare else f"compare-{Path(inputs[-1]).name}")
    console = Console(stderr=True)
    if compare:
        _write_one(build([], out_dir, inputs), out_dir, console)
        return
    from tenancy.report import load, scale

    found = load.scan(inputs)
    nothing = not found.runs and not found.scales
    if not (nothing and len(found.skipped) == 1):  # a lone skip is the error's own line
        for line in found.skipped:
            console.print(f"skipped {line}", markup=False, highlight=False, soft_wrap=True)
    if nothing:
        raise TenancyError(load.nothing_to_report(found))
    for d in found.scales:  # a `tenancy scale` directory has its own report
        scale_out = out_dir if d == first and len(inputs) == 1 else out_dir / _slug(d.name)
        _write_one(scale.build(d, scale_out), scale_out, console)
    if found.runs:
        _write_runs(inputs, found.runs, out_dir, console)


def _write_runs(inputs: list[str], runs: list[dict[str, Any]], out_dir: Path, console: Any) -> None:
    from tenancy.report import load

    groups = load.by_gpu_model(runs)
    if len(groups) > 1:  # one figure never mixes GPU models: one report per model
        console.print(f"warning: runs on {len(groups)} GPU models ("
                      + ", ".join(f"{m}: {len(rs)} run(s)" for m, rs in groups.items())
                      + f"); one report per model under {out_dir}/<model>/ (tenancy report --compare to "
                      "set them side by side)", markup=False, highlight=False, soft_wrap=True)
        for model, group in groups.items():
            _write_one(build(inputs, out_dir / _slug(model), runs=group), out_dir / _slug(model), console)
        return
    _write_one(build(inputs, out_dir, runs=runs), out_dir, console)


def _slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in model).strip("-") or "gpu"


def _write_one(rep: dict[str, Any], out_dir: Path, console: Any) -> None:
    from tenancy.report import render

    written = render.write(rep, out_dir)
    made = [f for f in rep["figures"] if f.get("file")]
    console.print(f"report: {rep['n_runs']} run(s), {len(made)} figure(s) -> {written['html']} and {written['md']}")
    for f in rep["figures"]:
        if not f.get("file"):
            console.print(f"  skipped {f['title']}: {f['note']}", markup=False, highlight=False, soft_wrap=True)
