"""The NVIDIA MPS control daemon of one shared launch: private directories, start, readiness,
queries, stop.

The daemon is ours from `-d` to `quit`: its pipe directory is a fresh short private (0700)
directory under /tmp (unix sockets have a 108-byte path limit and may not work on network file
systems) and its log directory is inside the run directory, so a system daemon under
/tmp/nvidia-mps is never touched, and several daemons of one run never share a pipe directory.
The daemon starts without a profiler's injection environment (it must not be traced or preloaded
under `--nsys`). `stop` quits it, then verifies that no control daemon or server of ours survives
(those whose environment names our pipe directory, and every server `get_server_list` named),
killing and reporting what does, and removes the pipe directory. `stop` is safe to call on every
exit path (normal end, tenant crash, exception, Ctrl-C, SIGTERM, SIGHUP) and more than once.
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

from tenancy.core.errors import TenancyError
from tenancy.core.signals import shielded
from tenancy.gpu.mps_processes import CONTROL, PROGRAMS, alive, processes_of, program_of, read_proc

PIPE_ROOT = "/tmp"
SOCKET_MAX = 108  # sun_path of a unix socket, terminating NUL included
SOCKET_SLACK = 32  # longest name MPS puts in the pipe directory, with room to spare
INJECTION_VARS = ("LD_PRELOAD", "CUDA_INJECTION64_PATH", "CUDA_INJECTION32_PATH", "NVTX_INJECTION64_PATH",
                  "NVTX_INJECTION32_PATH")  # how Nsight Systems hooks into the processes it profiles
INJECTION_PREFIXES = ("NSYS_", "QUADD_")
READY_TIMEOUT_S = 15.0
QUERY_TIMEOUT_S = 15.0
QUIT_TIMEOUT_S = 15.0


def private_pipe_dir() -> Path:
    """A fresh private directory under /tmp, short enough for the daemon's sockets."""
    path = Path(tempfile.mkdtemp(prefix="tenancy-mps-", dir=PIPE_ROOT))  # mode 0700
    if len(str(path)) + SOCKET_SLACK >= SOCKET_MAX:
        path.rmdir()
        raise TenancyError(f"MPS pipe directory {path} is too long for a unix socket path ({SOCKET_MAX} bytes)")
    return path


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without a profiler's injection variables, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in INJECTION_VARS and not k.startswith(INJECTION_PREFIXES)}
    return {**env, **extra}


class MpsDaemon:
    """One control daemon with private directories; `info` is what the manifest records."""

    def __init__(self, run_dir: Path, control: str = CONTROL, default_thread_percentage: int | None = None) -> None:
        self.control = control
        self.default_thread_percentage = default_thread_percentage
        self.log_dir = run_dir.resolve() / "mps" / "log"
        self.pipe_dir: Path | None = None
        self.started = False
        self.seen_servers: set[int] = set()
        self.info: dict[str, Any] = {}

    @property
    def env(self) -> dict[str, str]:
        """What the daemon, every query and every client must see."""
        assert self.pipe_dir is not None
        return {"CUDA_MPS_PIPE_DIRECTORY": str(self.pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(self.log_dir)}

    def _names(self) -> tuple[str, ...]:
        return (os.path.basename(self.control), *PROGRAMS)

    def ours(self) -> list[int]:
        """Live MPS processes of this daemon: its environment names our pipe directory, or it is a
        server the daemon listed (a server need not inherit the daemon's environment)."""
        servers = {p for p in self.seen_servers
                   if alive(p) and program_of(read_proc(Path(f"/proc/{p}/cmdline")).split(b"\0"))}
        return sorted(set(processes_of(self.pipe_dir, self._names())) | servers)

    def start(self) -> dict[str, Any]:
        path = shutil.which(self.control)
        if path is None:
            raise TenancyError(f"sharing: mps needs {self.control} on PATH (NVIDIA driver utilities)")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pipe_dir = private_pipe_dir()
        self.started = True  # from here on, stop() must run whatever happens
        removed = sorted(k for k in os.environ if k not in clean_env({}))
        self.info.update({"control": path, "pipe_dir": str(self.pipe_dir), "log_dir": str(self.log_dir),
                          "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "env_removed": removed})
        # own session: a Ctrl-C to the terminal must not reach the daemon before we quit it; its
        # output goes to a file, a pipe could be held open by the daemon it forks
        out_file = self.log_dir / "control-start.out"
        with open(out_file, "w") as out:
            try:
                code = subprocess.run([path, "-d"], env=clean_env(self.env), stdin=subprocess.DEVNULL,
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
            self.info["default_active_thread_percentage_requested"] = self.default_thread_percentage
        self.info["default_active_thread_percentage"] = self._default_percentage()
        return self.info

    def _default_percentage(self) -> float | None:
        """The daemon's default active thread percentage as it reports it (None: no answer)."""
        try:
            answer = self.query("get_default_active_thread_percentage").split()
            return float(answer[0]) if answer else None
        except (TenancyError, ValueError):
            return None

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
            proc = subprocess.run([self.control], input=command + "\n", env=clean_env(self.env),
                                  capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise TenancyError(f"MPS control query {command!r} failed: {_one_line(str(err))}") from None
        if proc.returncode != 0:
            raise TenancyError(f"MPS control query {command!r} failed (exit {proc.returncode}): "
                               f"{_one_line(proc.stderr or proc.stdout)}")
        return proc.stdout

    def servers(self) -> list[int]:
        found = _pids(self.query("get_server_list"))
        self.seen_servers.update(found)
        return found

    def clients(self, server: int) -> list[int]:
        return _pids(self.query(f"get_client_list {server}"))

    def stop(self) -> dict[str, Any]:
        """Quit the daemon, wait for it and its servers to go, kill what is left, remove the pipe
        directory; never raises."""
        if not self.started:
            return self.info
        self.started = False
        with shielded() as held:
            stop: dict[str, Any] = {}
            try:
                self.servers()  # servers to wait for, also those that do not carry our environment
            except TenancyError:
                pass
            try:
                proc = subprocess.run([self.control], input="quit\n", env=clean_env(self.env),
                                      capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
                stop["quit_exit"] = proc.returncode
            except (OSError, subprocess.SubprocessError) as err:
                stop["quit_exit"] = None
                stop["quit_error"] = _one_line(str(err))
            deadline = time.monotonic() + QUIT_TIMEOUT_S
            left = self.ours()
            while left and time.monotonic() < deadline:
                time.sleep(0.1)
                left = self.ours()
            stop["killed"] = _kill(left, self.ours)
            stop["left_running"] = self.ours()
            stop["clean"] = not stop["killed"] and not stop["left_running"]
            if stop["killed"]:
                stop["note"] = (f"MPS processes {stop['killed']} were still running {QUIT_TIMEOUT_S:.0f} s after "
                                f"quit and were killed")
            shutil.rmtree(self.pipe_dir, ignore_errors=True)
            stop["pipe_dir_removed"] = not self.pipe_dir.exists()
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


def _pids(text: str) -> list[int]:
    return [int(tok) for tok in text.split() if tok.isdigit()]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300] or "no output"
