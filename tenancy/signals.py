"""Holding off the stop signals while what was measured is written or a daemon is stopped."""
from __future__ import annotations

import signal
import threading
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class shielded:
    """Ctrl-C, SIGTERM and SIGHUP are recorded, not raised, inside the block (main thread only):
    a second Ctrl-C while the first one's results are written must not lose them, and the command
    ends right after anyway. `caught` lists the signals that arrived."""

    def __enter__(self) -> "shielded":
        self.saved: dict[int, Any] = {}
        self.caught: list[int] = []
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, lambda n, f: self.caught.append(n)) for s in STOP_SIGNALS}
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for s, handler in self.saved.items():
            signal.signal(s, handler)
