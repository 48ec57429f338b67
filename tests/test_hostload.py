"""Foreign host load from /proc readings (a fake /proc tree: no timing, no real load)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tenancy.gpu.hostload import HostLoad


def fake_proc(root: Path, busy: tuple[int, ...], procs: dict[int, tuple[int, int]], me: int = 100) -> Path:
    """/proc/stat with `busy` = (user, nice, system, idle, iowait, irq, softirq, steal) ticks, and
    per pid (ppid, ticks) split over utime/stime/cutime/cstime."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, busy)) + " 0 0\ncpu0 1 2 3\n")
    for pid, (ppid, ticks) in procs.items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        # pid (comm with ) and spaces) state ppid ... utime stime cutime cstime at fields 14-17
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(ticks), "0", "0", "0"] + ["0"] * 5
        (d / "stat").write_text(f"{pid} (odd) name) " + " ".join(fields) + "\n")
    self_link = root / "self"
    if not self_link.exists():
        self_link.symlink_to(root / str(me))
    return root


def test_foreign_cores_are_busy_time_minus_our_process_tree(tmp_path, monkeypatch):
    monkeypatch.setattr("time.monotonic", iter([10.0, 20.0]).__next__)
    root = tmp_path / "proc"
    # us (100), our tenant (101), its child (102), and a stranger (200)
    fake_proc(root, (1000, 0, 0, 5000, 0, 0, 0, 0), {100: (1, 50), 101: (100, 100), 102: (101, 10), 200: (1, 500)})
    h = HostLoad(root)
    h.tick = 100
    before = h.read()
    assert before.ours_s == pytest.approx(1.6)
    # 10 s later: we used 10 s of CPU (one core), the stranger 5 s, the kernel 1 s of irq
    fake_proc(root, (2500, 0, 0, 6000, 0, 100, 0, 0), {100: (1, 60), 101: (100, 1090), 102: (101, 10), 200: (1, 1000)})
    after = h.read()
    load = HostLoad.foreign(before, after)
    assert load == {"wall_s": 10.0, "foreign_cores": pytest.approx(0.6)}


def test_no_proc_means_no_reading(tmp_path):
    assert HostLoad(tmp_path / "nothing").read() is None
    assert HostLoad.foreign(None, None) is None
