"""Which MPS processes exist: a /proc scan for control daemons and servers, ours (by the pipe
directory in their environment) or anyone's (`tenancy doctor`, the environment record)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CONTROL = "nvidia-cuda-mps-control"
PROGRAMS = ("nvidia-cuda-mps-control", "nvidia-cuda-mps-server")
DEFAULT_PIPE_DIR = "/tmp/nvidia-mps"  # where every CUDA program looks for a daemon by default


def read_proc(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def ancestors() -> set[int]:
    """Our own pid and our parents': never candidates for cleanup."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(read_proc(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
    return pids


def processes_of(pipe_dir: Path, names: tuple[str, ...]) -> list[int]:
    """Live processes whose environment points at `pipe_dir` and whose command line names an MPS
    program (the control daemon or a server it started, which inherits its environment)."""
    marker = f"CUDA_MPS_PIPE_DIRECTORY={pipe_dir}".encode()
    skip, found = ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        if marker not in read_proc(entry / "environ").split(b"\0"):
            continue
        cmdline = read_proc(entry / "cmdline").replace(b"\0", b" ").decode(errors="replace")
        state = read_proc(entry / "stat").rsplit(b")", 1)[-1].split()[:1]
        if state == [b"Z"]:
            continue  # a zombie holds nothing; its parent reaps it
        if any(n in cmdline for n in names):
            found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    state = read_proc(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[-1].split()[:1]
    return bool(state) and state != [b"Z"]


def program_of(cmdline: list[bytes]) -> str | None:
    """The MPS program a command line runs (argv[0], or argv[1] behind an interpreter)."""
    for arg in cmdline[:2]:
        name = os.path.basename(arg.decode(errors="replace"))
        if name in PROGRAMS:
            return name
    return None


def running_daemons() -> list[dict[str, Any]]:
    """MPS control daemons and servers running now (not descended from us), with their pipe
    directory where their environment is readable (another user's is not: `pipe_dir` None), and a
    daemon socket at the default pipe directory. Any CUDA program that can reach one joins it."""
    skip, found = ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        program = program_of(read_proc(entry / "cmdline").split(b"\0"))
        if program is None or not alive(int(entry.name)):
            continue
        environ = read_proc(entry / "environ")
        pipe = next((item.split(b"=", 1)[1].decode(errors="replace") for item in environ.split(b"\0")
                     if item.startswith(b"CUDA_MPS_PIPE_DIRECTORY=")), DEFAULT_PIPE_DIR if environ else None)
        found.append({"pid": int(entry.name), "program": program, "pipe_dir": pipe})
    if Path(DEFAULT_PIPE_DIR, "control").exists() and not any(f["pipe_dir"] == DEFAULT_PIPE_DIR for f in found):
        found.append({"pid": None, "program": CONTROL, "pipe_dir": DEFAULT_PIPE_DIR})
    return sorted(found, key=lambda f: (f["pid"] is None, f["pid"] or 0))
