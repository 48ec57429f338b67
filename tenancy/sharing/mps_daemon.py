"""The NVIDIA MPS control daemon of one run: private directories, start, readiness, queries, stop.

The daemon is ours from `-d` to `quit`: its pipe and log directories are private to the run (a
system daemon under /tmp/nvidia-mps is never touched), and `stop` verifies that no control daemon
or server of ours survives, killing and reporting what does. `stop` is safe to call on every exit
path (normal end, tenant crash, exception, Ctrl-C, SIGTERM) and more than once.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tenancy.errors import TenancyError

CONTROL = "nvidia-cuda-mps-control"
SOCKET_MAX = 108  # sun_path of a unix socket, terminating NUL included
SOCKET_SLACK = 32  # longest name MPS puts in the pipe directory, with room to spare
READY_TIMEOUT_S = 15.0
QUERY_TIMEOUT_S = 15.0
QUIT_TIMEOUT_S = 15.0


def pipe_dir_for(run_dir: Path) -> tuple[Path, bool]:
    """The pipe directory inside the run directory, or a short private one when the run
    directory's path would overflow a unix socket path; the flag says which."""
    inside = run_dir.resolve() / "mps" / "pipe"
    if len(str(inside)) + SOCKET_SLACK < SOCKET_MAX:
        return inside, False
    return Path(tempfile.mkdtemp(prefix="tenancy-mps-")), True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _ancestors() -> set[int]:
    """Our own pid and our parents': never candidates for cleanup."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            pid = int(_read(Path(f"/proc/{pid}/stat")).rsplit(b")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
    return pids


def processes_of(pipe_dir: Path, names: tuple[str, ...]) -> list[int]:
    """Live processes whose environment points at `pipe_dir` and whose command line names an MPS
    program (the control daemon or a server it started, which inherits its environment)."""
    marker = f"CUDA_MPS_PIPE_DIRECTORY={pipe_dir}".encode()
    skip, found = _ancestors(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        if marker not in _read(entry / "environ").split(b"\0"):
            continue
        cmdline = _read(entry / "cmdline").replace(b"\0", b" ").decode(errors="replace")
        state = _read(entry / "stat").rsplit(b")", 1)[-1].split()[:1]
        if state == [b"Z"]:
            continue  # a zombie holds nothing; its parent reaps it
        if any(n in cmdline for n in names):
            found.append(int(entry.name))
    return sorted(found)


class MpsDaemon:
    """One control daemon with private directories; `info` is what the manifest records."""

    def __init__(self, run_dir: Path, control: str = CONTROL, default_thread_percentage: int | None = None) -> None:
        self.run_dir = run_dir
        self.control = control
        self.default_thread_percentage = default_thread_percentage
        self.log_dir = run_dir.resolve() / "mps" / "log"
        self.pipe_dir: Path | None = None
        self.short_pipe_dir = False
        self.started = False
        self.info: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        """What the daemon, every query and every client must see."""
        assert self.pipe_dir is not None
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _names(self) -> tuple[str, ...]:
        return (os.path.basename(self.control), "nvidia-cuda-mps-control", "nvidia-cuda-mps-server")

    def start(self) -> dict[str, Any]:
        path = shutil.which(self.control)
        if path is None:
            raise TenancyError(f"sharing: mps needs {self.control} on PATH (NVIDIA driver utilities)")
        self.pipe_dir, self.short_pipe_dir = pipe_dir_for(self.run_dir)
        self.pipe_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pipe_dir, 0o700)
        self.info.update({"control": path, "pipe_dir": str(self.pipe_dir), "log_dir": str(self.log_dir),
                          "pipe_dir_outside_run_dir": self.short_pipe_dir})
        stale = processes_of(self.pipe_dir, self._names())
        if stale:
            raise TenancyError(f"an MPS daemon already uses {self.pipe_dir} (pids {stale}); stop it first")
        # own session: a Ctrl-C to the terminal must not reach the daemon before we quit it; its
        # output goes to a file, a pipe could be held open by the daemon it forks
        out_file = self.log_dir / "control-start.out"
        self.started = True  # from here on, stop() must run whatever happens
        with open(out_file, "w") as out:
            try:
                code = subprocess.run([path, "-d"], env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT, timeout=QUERY_TIMEOUT_S,
                                      start_new_session=True).returncode
            except (OSError, subprocess.TimeoutExpired) as err:
                raise TenancyError(f"{self.control} -d failed: {_one_line(str(err))}") from None
        if code != 0:
            raise TenancyError(f"{self.control} -d failed (exit {code}): "
                               f"{_one_line(out_file.read_text())}; see {self.log_dir}")
        self._wait_ready()
        self.info["daemon_pids"] = processes_of(self.pipe_dir, self._names())
        if self.default_thread_percentage is not None:
            self.query(f"set_default_active_thread_percentage {self.default_thread_percentage}")
            self.info["default_active_thread_percentage"] = self.default_thread_percentage
        return self.info

    def _wait_ready(self) -> None:
        """Ready = the control socket exists and a query is answered."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = "control socket not created"
        while time.monotonic() < deadline:
            if (self.pipe_dir / "control").exists():
                try:
                    self.query("get_server_list")
                    return
                except TenancyError as err:
                    last = str(err)
            time.sleep(0.05)
        raise TenancyError(f"MPS control daemon not ready after {READY_TIMEOUT_S:.0f} s ({last}); "
                           f"see {self.log_dir}/control.log")

    def query(self, command: str) -> str:
        """`echo command | nvidia-cuda-mps-control` with our directories; the daemon's answer."""
        try:
            proc = subprocess.run([self.control], input=command + "\n", env={**os.environ, **self.env},
                                  capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise TenancyError(f"MPS control query {command!r} failed: {_one_line(str(err))}") from None
        if proc.returncode != 0:
            raise TenancyError(f"MPS control query {command!r} failed (exit {proc.returncode}): "
                               f"{_one_line(proc.stderr or proc.stdout)}")
        return proc.stdout

    def servers(self) -> list[int]:
        return _pids(self.query("get_server_list"))

    def clients(self, server: int) -> list[int]:
        return _pids(self.query(f"get_client_list {server}"))

    def stop(self) -> dict[str, Any]:
        """Quit the daemon, wait for it and its servers to go, kill what is left; never raises."""
        if not self.started:
            return self.info
        self.started = False
        with _shielded() as held:
            stop: dict[str, Any] = {}
            try:
                proc = subprocess.run([self.control], input="quit\n", env={**os.environ, **self.env},
                                      capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
                stop["quit_exit"] = proc.returncode
            except (OSError, subprocess.SubprocessError) as err:
                stop["quit_exit"] = None
                stop["quit_error"] = _one_line(str(err))
            deadline = time.monotonic() + QUIT_TIMEOUT_S
            left = processes_of(self.pipe_dir, self._names())
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = processes_of(self.pipe_dir, self._names())
            stop["killed"] = _kill(left, lambda: processes_of(self.pipe_dir, self._names()))
            stop["left_running"] = processes_of(self.pipe_dir, self._names())
            stop["clean"] = not stop["killed"] and not stop["left_running"]
            if stop["killed"]:
                stop["note"] = (f"MPS processes {stop['killed']} were still running {QUIT_TIMEOUT_S:.0f} s after "
                                f"quit and were killed")
            if self.short_pipe_dir and not stop["left_running"]:
                shutil.rmtree(self.pipe_dir, ignore_errors=True)
            if held.caught:
                stop["signals_during_stop"] = [signal.Signals(n).name for n in held.caught]
            self.info["stop"] = stop
        return self.info


def _kill(pids: list[int], still: Any) -> list[int]:
    """SIGTERM, then SIGKILL what ignores it; the pids that had to be killed."""
    if not pids:
        return []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in still():
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + 3
        while still() and time.monotonic() < deadline:
            time.sleep(0.05)
    return pids


class _shielded:
    """Hold off Ctrl-C and SIGTERM while the daemon is being stopped (main thread only): cleanup
    finishes, and the run ends right after it anyway."""

    def __enter__(self) -> "_shielded":
        import threading

        self.saved: dict[int, Any] = {}
        self.caught: list[int] = []
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, lambda n, f: self.caught.append(n))
                          for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for s, handler in self.saved.items():
            signal.signal(s, handler)


def _pids(text: str) -> list[int]:
    return [int(tok) for tok in text.split() if tok.isdigit()]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300] or "no output"
