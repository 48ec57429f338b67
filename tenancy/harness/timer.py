"""Per-iteration timers: CUDA events on a GPU, the host's monotonic clock on a CPU.

A timer is started, optionally marked between stages (prefill | decode), and stopped; `stop`
returns the stage durations in milliseconds. The CUDA timer synchronises on its last event, so
each iteration keeps one request in flight per tenant, as the study does.
"""
from __future__ import annotations

import time


class CpuTimer:
    def __init__(self) -> None:
        self._marks: list[int] = []

    def start(self) -> None:
        self._marks = [time.perf_counter_ns()]

    def mark(self) -> None:
        self._marks.append(time.perf_counter_ns())

    def stop(self) -> list[float]:
        self.mark()
        return [(b - a) / 1e6 for a, b in zip(self._marks, self._marks[1:])]


class CudaTimer:
    """Events are recorded on the current stream, so each stream-sharing tenant times its own work."""

    def __init__(self, max_marks: int = 4) -> None:
        import torch

        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(max_marks)]
        self._n = 0

    def start(self) -> None:
        self._n = 0
        self.mark()

    def mark(self) -> None:
        self._events[self._n].record()
        self._n += 1

    def stop(self) -> list[float]:
        self.mark()
        last = self._events[self._n - 1]
        last.synchronize()
        ev = self._events[: self._n]
        return [a.elapsed_time(b) for a, b in zip(ev, ev[1:])]


def make_timer(device: str):
    return CudaTimer() if device.startswith("cuda") else CpuTimer()
