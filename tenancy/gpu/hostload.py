"""Foreign load on the host while a launch runs: CPU time spent by processes that are not ours.

A neighbour that takes a core for a while changes every number on a CPU (and the launch rate on
a GPU), and nothing else in the run would show it. From /proc: the machine's busy time
(/proc/stat: user, nice, system, irq, softirq, steal) minus what this process, its live
descendants and the children it reaped used (utime, stime, cutime, cstime of each). Kernel work
on our behalf, and daemons we started that left our process tree (the MPS control daemon), count
as foreign, so a quiet machine reads a little above zero.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

WARN_CORES = 0.25  # foreign load above this many cores on average is flagged


@dataclass
class Reading:
    wall_s: float
    busy_s: float
    ours_s: float


class HostLoad:
    def __init__(self, proc: str | Path = "/proc") -> None:
        self.proc = Path(proc)
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def read(self) -> Reading | None:
        """Now; None where /proc is not there to read (not Linux)."""
        try:
            cpu = (self.proc / "stat").read_text().splitlines()[0].split()
            procs = self._processes()
        except (OSError, IndexError, ValueError):
            return None
        # /proc/stat cpu: user nice system idle iowait irq softirq steal ...
        busy = sum(int(cpu[i]) for i in (1, 2, 3, 6, 7, 8) if i < len(cpu))
        ours = sum(cpu_ticks for pid, (_, cpu_ticks) in procs.items() if pid in _tree(procs, self.me))
        return Reading(time.monotonic(), busy / self.tick, ours / self.tick)

    @property
    def me(self) -> int:
        return int((self.proc / "self").resolve().name) if (self.proc / "self").exists() else os.getpid()

    def _processes(self) -> dict[int, tuple[int, int]]:
        """pid -> (parent pid, utime + stime + cutime + cstime in ticks), for every process."""
        out = {}
        for d in self.proc.iterdir():
            if not d.name.isdigit():
                continue
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # it ended while we looked
            # after the ")": state is field 3 of proc(5), ppid 4, utime..cstime 14-17
            out[int(d.name)] = (int(fields[1]), sum(int(fields[i]) for i in range(11, 15)))
        return out

    @staticmethod
    def foreign(before: Reading | None, after: Reading | None) -> dict[str, float] | None:
        """Average cores used by others between two readings."""
        if before is None or after is None or after.wall_s <= before.wall_s:
            return None
        wall = after.wall_s - before.wall_s
        other = max(0.0, (after.busy_s - before.busy_s) - (after.ours_s - before.ours_s))
        return {"wall_s": round(wall, 3), "foreign_cores": round(other / wall, 3)}


def _tree(procs: dict[int, tuple[int, int]], root: int) -> set[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen
