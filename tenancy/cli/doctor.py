"""`tenancy doctor`: what a new machine can run, checked before a study starts.

Each check is one row: ok, info, warn, or block (a GPU run here would fail or mis-measure), with
how to fix it. `tenancy run` and `tenancy sweep` apply the parts that concern one run themselves
(preflight.py: memory and compute mode; environment.resolve_device: visible devices and the
driver; the runner: MPS daemons that are not ours).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tenancy.gpu import devices, environment
from tenancy.gpu.mps_processes import running_daemons
from tenancy.harness import preflight

SEED_STUDY = Path(__file__).resolve().parents[2] / "scenarios" / "seed-study"
GIB = 1024.0


@dataclass
class Check:
    name: str
    status: str  # ok | info | warn | block
    detail: str
    fix: str = ""


def checks(seed_study: Path = SEED_STUDY) -> list[Check]:
    state = environment.nvml_state()
    card, why = devices.current(state["gpus"])
    out = [_torch(), _driver(state, card)]
    out += [_card(g, g is card) for g in state["gpus"]]
    out.append(_visible(state["gpus"], card, why))
    out.append(_daemons(running_daemons()))
    if card:
        out += _nvml(card)
    out += [_tool("nvidia-cuda-mps-control", "sharing: mps", bool(card), None),
            _tool("nsys", "--nsys", bool(card), "--version"),
            _seed(seed_study, card)]
    return out


def blocked(rows: list[Check]) -> bool:
    return any(r.status == "block" for r in rows)


def as_json(rows: list[Check]) -> dict[str, Any]:
    return {"blocked": blocked(rows), "checks": [asdict(r) for r in rows]}


def _torch() -> Check:
    import torch

    cuda = environment.torch_cuda_version()
    return Check("torch", "ok", f"torch {torch.__version__}, " + (f"built with CUDA {cuda}" if cuda else "CPU build"))


def _driver(state: dict[str, Any], card: dict[str, Any] | None) -> Check:
    if not state["gpus"]:
        return Check("NVIDIA GPU", "info", (
            f"no NVIDIA GPU here ({state['error'] or 'NVML sees none'}). What runs anyway, on the CPU (device auto "
            "picks it): sharing exclusive, timeslice and streams (threads, no CUDA streams), sweeps, reports and the "
            "serving engine, timed with the host clock. Needs a GPU: sharing mps, the NVML monitor, CUDA-event timing, "
            "Nsight GPU traces"))
    cuda = environment.torch_cuda_version()
    detail = f"driver {state['driver']}, supports CUDA {state['cuda_driver']}; torch CUDA {cuda or 'none (CPU build)'}"
    if cuda is None:
        return Check("driver and torch", "block", detail + ": GPU runs would fall back to the CPU",
                     f"install a CUDA build of torch for CUDA {state['cuda_driver']} or older "
                     "(https://pytorch.org/get-started/locally/)")
    level, gap = devices.driver_gap(cuda, card.get("cuda_driver") if card else state["cuda_driver"])
    fix = "update the NVIDIA driver, or install a torch built for the driver's CUDA version" if level else ""
    return Check("driver and torch", level or "ok", f"{detail}{': ' + gap if gap else ''}", fix)


def _card(g: dict[str, Any], used: bool) -> Check:
    mem = f"{g['memory_total_mib'] / GIB:.1f} GiB" if g.get("memory_total_mib") else "memory unknown"
    mig = {None: "no MIG", 0: "MIG off", 1: "MIG on"}.get(g.get("mig_mode"), f"MIG {g.get('mig_mode')}")
    persist = {1: "persistence on", 0: "persistence off"}.get(g.get("persistence_mode"), "persistence unknown")
    detail = (f"{g.get('name')} {g.get('uuid')}, {mem}, compute mode {g.get('compute_mode')}, {persist}, {mig}"
              + (" (the GPU runs use)" if used else ""))
    smi = f"nvidia-smi -i {g.get('uuid')}"
    if g.get("compute_mode") == "prohibited":
        return Check(f"GPU {g['index']}", "block" if used else "warn", detail + ": no process may use it",
                     f"{smi} -c DEFAULT (root)")
    if g.get("mig_mode") == 1:
        return Check(f"GPU {g['index']}", "block" if used else "warn", detail + ": tenancy measures whole GPUs",
                     f"{smi} -mig 0 (root, no processes on the GPU)")
    if g.get("compute_mode") in ("exclusive_process", "exclusive_thread"):
        return Check(f"GPU {g['index']}", "warn", detail + ": time-sliced runs of several processes are refused; "
                     "mps and streams run", f"{smi} -c DEFAULT (root) to time-slice")
    if g.get("persistence_mode") == 0:
        return Check(f"GPU {g['index']}", "warn", detail + ": the driver may unload between runs",
                     f"{smi} -pm 1 (root), or run nvidia-persistenced")
    return Check(f"GPU {g['index']}", "ok", detail)


def _visible(gpus: list[dict[str, Any]], card: dict[str, Any] | None, why: str) -> Check:
    import os

    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    name = "CUDA_VISIBLE_DEVICES"
    if not gpus:
        return Check(name, "info", f"{value!r}" if value is not None else "unset")
    if card is None:
        hidden = value is not None and value.split(",")[0].strip() in devices.HIDDEN
        return Check(name, "info" if hidden else "block", why + ("; runs use the CPU" if hidden else ""),
                     "" if hidden else "set it to an index or UUID from the GPU rows, or unset it")
    shown = "unset" if value is None else repr(value)
    detail = f"{shown}: runs use GPU {card['index']} ({card['uuid']}), named by UUID to every process they start"
    mixed = len({g.get("name") for g in gpus}) > 1
    if mixed and value and value.split(",")[0].strip().isdigit() and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return Check(name, "warn", detail + "; the index is read in PCI bus order (NVML's), but other CUDA programs "
                     "here number these mixed GPUs fastest-first", "use a UUID, or export CUDA_DEVICE_ORDER=PCI_BUS_ID")
    return Check(name, "ok", detail)


def _daemons(daemons: list[dict[str, Any]]) -> Check:
    if not daemons:
        return Check("MPS daemons", "ok", "none running")
    (text,) = preflight.mps_warnings(daemons)
    return Check("MPS daemons", "warn", text, "as its owner: echo quit | CUDA_MPS_PIPE_DIRECTORY=<its pipe dir> "
                 "nvidia-cuda-mps-control")


def _nvml(card: dict[str, Any]) -> list[Check]:
    """The fields this driver answers for the run's GPU, and compute processes already on it."""
    from tenancy.gpu.monitor import NvmlReader

    try:
        reader = NvmlReader(card["uuid"])
    except Exception as err:
        return [Check("NVML fields", "warn", f"cannot open the GPU: {type(err).__name__}: {err}",
                      "check the driver with nvidia-smi")]
    try:
        info, row = reader.describe(), reader.read()
    finally:
        reader.close()
    fields = Check("NVML fields", "ok", "answered: " + ", ".join(f"{k} ({v})" for k, v in info["fields"].items()))
    if info["fields_unanswered"]:
        fields = Check("NVML fields", "warn", "not answered: " + "; ".join(
            f"{k}: {v}" for k, v in info["fields_unanswered"].items()) + "; those gpu.parquet columns stay empty",
            "a newer driver answers more fields")
    procs = row["processes"]
    if not procs:
        return [fields, Check("GPU processes", "ok", "no compute process on the GPU")]
    listed = ", ".join(f"pid {pid} ({mib:.0f} MiB)" for pid, mib in procs[:5])
    return [fields, Check("GPU processes", "warn", f"already on the GPU: {listed}; they share it with every run",
                          "stop them, or use another GPU (CUDA_VISIBLE_DEVICES=<UUID>)")]


def _tool(program: str, feature: str, have_gpu: bool, version_flag: str | None) -> Check:
    path = shutil.which(program)
    if path is None:
        return Check(program, "warn" if have_gpu else "info", f"not on PATH: {feature} is unavailable",
                     "install the NVIDIA driver utilities" if program.startswith("nvidia") else
                     "install Nsight Systems (https://developer.nvidia.com/nsight-systems) and put nsys on PATH")
    detail = path
    if version_flag:
        try:
            out = subprocess.run([path, version_flag], capture_output=True, text=True, timeout=30).stdout
            detail += f", {' '.join(out.split())[:80] or 'no version printed'}"
        except (OSError, subprocess.SubprocessError) as err:
            detail += f", version unknown ({err})"
    return Check(program, "ok", detail)


def _seed(seed_study: Path, card: dict[str, Any] | None) -> Check:
    """Whether the seed study fits this GPU's memory and this host's memory for loading."""
    from tenancy.harness.matrix import expand_file
    from tenancy.harness.runner import resolve_on

    if not seed_study.is_dir():
        return Check("seed study", "info", f"{seed_study} not found (an installed copy): not checked")
    runs = [r for f in sorted(seed_study.glob("*.yaml")) for r in expand_file(f)]
    host = environment.host_memory_mib()["available_mib"]
    params: dict = {}
    too_big = []
    need = {"gpu": 0.0, "host": 0.0}
    for r in runs:
        why, memory = preflight.refusal(resolve_on("cuda", r.scenario), [card] if card else [], host, params)
        need = {"gpu": max(need["gpu"], memory["peak_mib"]), "host": max(need["host"], memory["host_peak_mib"])}
        if why:
            too_big.append(f"{r.name} ({why})")
    largest = f"largest run needs ~{need['gpu'] / GIB:.1f} GiB of GPU memory, ~{need['host'] / GIB:.1f} GiB of host memory"
    if card is None:
        return Check("seed study", "info", f"{len(runs)} runs planned for cuda; {largest}: check on the GPU machine")
    if not too_big:
        return Check("seed study", "ok", f"all {len(runs)} runs fit; {largest}")
    return Check("seed study", "warn", f"{len(runs) - len(too_big)} of {len(runs)} runs fit; e.g. {too_big[0]}",
                 f"tenancy sweep {seed_study} --dry-run lists them; the sweep skips what does not fit")


@click.command("doctor")
@click.option("--json", "json_out", is_flag=True, help="Print the checks as JSON (for scripts).")
def doctor_cmd(json_out: bool) -> None:
    """Check this machine before a study: GPUs, driver and torch, MPS, nsys, NVML, memory.

    Exit 0 when nothing blocks a GPU run here, 1 when something does (each row says how to fix it).
    """
    import json

    rows = checks()
    if json_out:
        click.echo(json.dumps(as_json(rows), indent=2))
    else:
        table = Table(title="tenancy doctor")
        for col in ("check", "status", "detail", "fix"):
            table.add_column(col, overflow="fold")
        colours = {"ok": "green", "info": "cyan", "warn": "yellow", "block": "bold red"}
        for r in rows:
            table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", r.detail, r.fix)
        Console().print(table)
        blocking = [r.name for r in rows if r.status == "block"]
        Console().print(f"blocked by: {', '.join(blocking)}" if blocking else "nothing blocks a run here")
    sys.exit(1 if blocked(rows) else 0)
