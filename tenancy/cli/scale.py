"""`tenancy scale SCENARIO`: autoscaling policies on a replicated serving tenant."""
from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from tenancy.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, TenancyError
from tenancy.core.signals import shielded


@click.command("scale")
@click.argument("scenario_file", metavar="SCENARIO")
@click.option("--out", type=click.Path(file_okay=False), help="Scale directory (default results/<name>-<time>/).")
@click.option("--device", type=click.Choice(["auto", "cuda", "cpu"]), help="Override the scenario's device.")
@click.option("--simulate", is_flag=True, help="Only the simulation (after calibrating, unless the scenario "
              "gives capacity_rps, base_latency_s and cold_start_s).")
def scale(scenario_file: str, out: str | None, device: str | None, simulate: bool) -> None:
    """Run every autoscale policy of SCENARIO on the same seeded trace, measured and simulated."""

    from tenancy.autoscale.study import run_study
    from tenancy.core import results
    from tenancy.core.env_vars import environ
    from tenancy.gpu import devices, environment
    from tenancy.harness import sharing
    from tenancy.harness.matrix import load_single
    from tenancy.harness.runner import resolve

    console = Console(stderr=True)
    scenario = resolve(load_single(scenario_file), device)
    if scenario.autoscale is None:
        raise TenancyError(f"{scenario_file}: no autoscale block; `tenancy scale` needs one (see README)")
    mode = sharing.get(scenario.sharing, scenario.device)
    mode.check()
    run_dir = results.new_run_dir(out, scenario.name)
    env = environment.collect()
    card = devices.current(env["gpus"])[0]
    manifest = {"kind": "scale", "schema_version": results.SCHEMA_VERSION, "created": results.utc_now(),
                "status": "running", "scenario_file": str(scenario_file), "scenario": scenario.model_dump(mode="json"),
                "device": scenario.device, "simulate_only": simulate, "environment": env,
                "sharing": {"mode": scenario.mode}}
    console.print(f"[bold]{scenario.name}[/]: scale, sharing={scenario.mode}, device={scenario.device} -> {run_dir}")
    study, code = None, 0
    try:
        with environ(devices.process_env(card)), mode.isolated(), mode.session(run_dir) as info:
            manifest["sharing"] = info
            replica_env = mode.env(scenario.tenants[0])
            study = run_study(scenario, run_dir, manifest, replica_env, simulate,
                              lambda step: console.print(f"  {step} ...", markup=False, highlight=False))
        failed = [p["policy"] for p in manifest["policies"] if p["status"] == "failed"]
        manifest["status"] = "failed" if failed else "complete"
        code = EXIT_FAILED if failed else 0
    except KeyboardInterrupt:  # the policies already run were written as each ended
        manifest["status"], code = "interrupted", EXIT_INTERRUPTED
        for p in manifest.get("policies", []):
            p["status"] = "interrupted" if p["status"] == "running" else p["status"]
    except Exception as err:
        manifest["status"], manifest["error"] = "failed", " ".join(str(err).split())[:300] or type(err).__name__
        raise
    finally:
        manifest["finished"] = results.utc_now()
        with shielded():
            if study is not None:
                study.write()
            else:
                results.write_json(Path(run_dir) / results.MANIFEST, manifest)
    if study is not None:  # None when interrupted before the study began
        _print_summary(study.summary, run_dir, console.is_terminal)
    if code == EXIT_INTERRUPTED:
        console.print(f"interrupted: what was measured is in {run_dir}")
    elif code:
        console.print(f"run failed: policies {', '.join(failed)} (results kept in {run_dir})", markup=False)
    sys.exit(code)


def _print_summary(rows: list[dict], run_dir: Path, terminal: bool) -> None:
    table = Table(title=f"tenancy scale ({run_dir})")
    cols = ("mode", "policy", "efficiency", "replica_seconds", "time_above_slo", "slo_attainment", "goodput",
            "scale_ups", "scale_downs", "cold_start_s")
    for c in cols:
        table.add_column(c, justify="left" if c in ("mode", "policy") else "right")
    for r in rows:
        table.add_row(*[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols])
    Console(width=None if terminal else 200).print(table)
