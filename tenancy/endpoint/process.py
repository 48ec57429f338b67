"""The server process: started in a session of its own (so a terminal's Ctrl-C reaches the
harness, not the server, and the whole group can be ended at once), waited for until
GET {url}/models answers, and always ended with its whole process group."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

STOP_WAIT_S = 15.0  # SIGTERM to the group, then this long before SIGKILL


class EndpointError(RuntimeError):
    """The server failed to start or died; the message is one line naming the tenant and its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Backstop for a tenant killed with SIGKILL: the kernel sends the server SIGTERM (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], url: str, log: Path) -> None:
        self.name, self.url, self.log = name, url, log
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env={**os.environ, **env}, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.pid = self.proc.pid  # also the process group's id

    def fail(self, why: str) -> EndpointError:
        return EndpointError(f"endpoint {self.name}: {why}; see {self.log}")

    def check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise self.fail(f"server exited with code {code}")

    def wait_ready(self, timeout_s: float, stop: Callable[[], bool] = lambda: False) -> list[str]:
        """Poll GET {url}/models until it answers 200; returns the model ids it lists."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise self.fail(f"server exited with code {code} before it was ready")
            models = self._models()
            if models is not None:
                return models
            if stop():
                raise self.fail("stopped while waiting for the server")
            if time.monotonic() > deadline:
                raise self.fail(f"GET {self.url}/models did not answer within ready_timeout_s={timeout_s:g}")
            time.sleep(0.25)

    def _models(self) -> Optional[list[str]]:
        try:
            with urllib.request.urlopen(f"{self.url}/models", timeout=2) as resp:
                body = json.loads(resp.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]

    def stop(self, wait_s: float = STOP_WAIT_S) -> None:
        """SIGTERM the group, wait for the leader, then SIGKILL whatever is left of the group
        (an engine's worker processes may outlive their leader)."""
        for sig, wait in ((signal.SIGTERM, wait_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
