"""Planning: every run resolved for the machine that will run it, its memory estimate, and what
stops it from running there (if anything)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from tenancy.core.errors import TenancyError
from tenancy.gpu import environment
from tenancy.harness import preflight
from tenancy.harness.matrix import Expanded
from tenancy.harness.scenario import Scenario
from tenancy.sweep.resume import existing_status


@dataclass(frozen=True)
class Overrides:
    """What `tenancy sweep` flags change in every scenario (None: the scenario's own value)."""

    device: str | None = None
    iterations: int | None = None
    warmup: int | None = None
    repeats: int | None = None

    def record(self, sources: list[str]) -> dict[str, Any]:
        return {"iterations": self.iterations, "warmup": self.warmup, "device": self.device,
                "repeats": self.repeats, "sources": list(sources)}


@dataclass
class Planned:
    """One expanded run, resolved for this machine, with what stops it from running (if anything)."""

    run: Expanded
    scenario: Scenario | None = None  # resolved
    memory: dict[str, Any] = field(default_factory=dict)
    skip: str = ""  # why it cannot run here ("" when it can)


def _repeats(scenario: Scenario, repeats: int | None) -> Scenario:
    return scenario if repeats is None else scenario.model_copy(update={"repeats": repeats})


def plan(runs: list[Expanded], device: str | None, iterations: int | None, warmup: int | None,
         dry_run: bool = False, repeats: int | None = None) -> list[Planned]:
    """Resolve every run for this machine and decide which cannot run here (and why)."""
    from tenancy.harness import sharing
    from tenancy.harness.runner import resolve, resolve_on

    gpus = environment.nvml_gpus()
    host = environment.host_memory_mib()["available_mib"]
    params: dict[tuple[str, str], int] = {}
    out = []
    for r in runs:
        p = Planned(r)
        try:
            p.scenario = resolve(r.scenario, device, iterations, warmup)
        except TenancyError as err:  # a GPU run on a machine without one: skipped, as MPS without a GPU is
            if (device or r.scenario.device) != "cuda":
                raise
            p.scenario = resolve_on("cuda", r.scenario, iterations, warmup)  # planning a GPU study on a laptop
            p.skip = "no GPU here: capacity not checked" if dry_run else f"unavailable: {err}"
        p.scenario = _repeats(p.scenario, repeats)
        why, p.memory = preflight.refusal(p.scenario, gpus, host, params)
        if not p.skip:
            try:
                sharing.get(p.scenario.sharing, p.scenario.device).check()
            except TenancyError as err:
                p.skip = f"unavailable: {err}"
        p.skip = p.skip or why or ("autoscale scenario: run it with tenancy scale" if r.scenario.autoscale else "")
        out.append(p)
    return out


def plan_remote(runs: list[Expanded], ov: Overrides) -> list[Planned]:
    """Plan runs for other machines (Slurm nodes): resolved for the device they will get (`auto`
    means a GPU there), with memory estimates for the job's limits; what this login node has is
    not checked, each node plans its own run again before running it."""
    from tenancy.harness import estimate
    from tenancy.harness.runner import resolve_on

    out = []
    for r in runs:
        device = ov.device or r.scenario.device
        scenario = resolve_on("cpu" if device == "cpu" else "cuda", r.scenario, ov.iterations, ov.warmup)
        out.append(Planned(r, _repeats(scenario, ov.repeats), estimate.run_mib(scenario)))
    return out


def dry_run_table(plans: list[Planned], study_dir: Path | None) -> Table:
    dev = plans[0].scenario.device if plans else "?"
    table = Table(title=f"{len(plans)} run(s), device {dev}")
    sizes = ("est. peak memory", "weights", "host memory")
    for col in ("#", "run", "sharing", "procs", *sizes, "status"):
        table.add_column(col, justify="right" if col in ("#", "procs", *sizes) else "left", no_wrap=col != "status")
    for i, p in enumerate(plans, 1):
        status = p.skip or "will run"
        if not p.skip and study_dir is not None and existing_status(study_dir / p.run.name, p.scenario) == "complete":
            status = "complete (skipped)"
        table.add_row(str(i), p.run.name, p.scenario.mode, str(len(p.scenario.instances())),
                      f"{p.memory['peak_mib'] / 1024:.2f} GiB", f"{p.memory['weights_mib'] / 1024:.2f} GiB",
                      f"{p.memory['host_peak_mib'] / 1024:.2f} GiB", status)
    return table
