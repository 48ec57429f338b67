"""Every way a user stops a command (Ctrl-C, a double Ctrl-C, SIGTERM, a dropped ssh session's
SIGHUP) ends it with exit 130 and status interrupted, keeps what was measured and leaves no
process of it behind, zombies included (nothing reaps orphans in a container)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import tiny, write_scenario

# (signal, to the whole process group as a terminal does, how many times)
STOPS = {"SIGINT": (signal.SIGINT, True, 1), "double-SIGINT": (signal.SIGINT, True, 2),
         "SIGTERM": (signal.SIGTERM, False, 1), "SIGHUP": (signal.SIGHUP, True, 1)}


def _long_scenario(tmp_path: Path) -> Path:
    return write_scenario(tmp_path / "s.yaml", name="long", device="cpu", warmup=1, iterations=1000000, repeats=1,
                          tenants=[tiny("a", "bert-base"), tiny("b", "bert-base", seq=8)])


def _scale_scenario(tmp_path: Path) -> Path:
    return write_scenario(tmp_path / "scale.yaml", name="scale", device="cpu", seed=0, tenants=[
        {"name": "llm", "model": "llama-3.2-1b", "size": "tiny", "task": "serve", "serving": {
            "max_batch_size": 4, "workload": {"arrival": "poisson", "rate": 20, "duration_s": 600,
                                              "input_len": [8, 16], "output_len": [2, 4]}}}],
        autoscale={"min_replicas": 1, "max_replicas": 2, "decision_interval_s": 0.5, "capacity_rps": [20, 40],
                   "base_latency_s": 0.05, "cold_start_s": 1.0, "policies": [{"policy": "static", "replicas": 2}]})


# command, and the line on stderr after which it is measuring; a sweep runs its runs quietly, so
# after its first line the test waits for its first run's manifest (written as the run starts)
COMMANDS = {
    "run": (lambda p, out: ["run", str(_long_scenario(p)), "--out", str(out)], "measuring"),
    "serve": (lambda p, out: ["serve", "--model", "distilgpt2", "--size", "tiny", "--device", "cpu",
                              "--rate", "2", "--num-requests", "1000", "--out", str(out)], "serving ->"),  # 500 s of arrivals
    "scale": (lambda p, out: ["scale", str(_scale_scenario(p)), "--out", str(out)], "static"),
    "sweep": (lambda p, out: ["sweep", str(_long_scenario(p)), "--no-control", "--out", str(out)], "sweep:"),
}


def _group(pgid: int) -> list[str]:
    """Every process of the group, zombies too: `pid state cmd`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name_end = text.rindex(")")
        fields = text[name_end + 2:].split()
        if int(fields[2]) == pgid:
            found.append(f"{stat.parent.name} {fields[0]} {text[text.index('(') + 1:name_end]}")
    return found


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_stopped_command_leaves_no_process_and_keeps_its_results(tmp_path, command):
    """One process per way of stopping, run side by side (each alone would cost its start-up)."""
    args, ready = COMMANDS[command]
    procs = {}
    for stop in STOPS:
        work = tmp_path / stop
        work.mkdir()
        log = (work / "stderr.log").open("w")
        procs[stop] = subprocess.Popen([sys.executable, "-m", "tenancy", *args(work, work / "out")], stdout=log,
                                       stderr=log, text=True, start_new_session=True)
    deadline = time.monotonic() + 300
    for stop, proc in procs.items():
        sig, to_group, times = STOPS[stop]
        log = tmp_path / stop / "stderr.log"
        out = tmp_path / stop / "out"
        while ready not in log.read_text() or (command == "sweep" and not any(out.glob("*/manifest.json"))):
            assert time.monotonic() < deadline and proc.poll() is None, f"{stop}: {log.read_text()}"
            time.sleep(0.2)
        for _ in range(times):
            os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
            time.sleep(0.3)
    for stop, proc in procs.items():
        proc.wait(timeout=120)
        err = (tmp_path / stop / "stderr.log").read_text()
        assert proc.returncode == 130, f"{stop}: {err}"
        assert "Traceback" not in err and "internal error" not in err, f"{stop}: {err}"
        left = _group(proc.pid)
        end = time.monotonic() + 10
        while left and time.monotonic() < end:
            time.sleep(0.2)
            left = _group(proc.pid)
        assert not left, f"{stop}: left behind: {left}\n{err}"
        statuses = {json.loads(m.read_text())["status"] for m in (tmp_path / stop / "out").rglob("manifest.json")}
        assert "interrupted" in statuses and statuses <= {"interrupted", "complete"}, f"{stop}: {statuses}\n{err}"
