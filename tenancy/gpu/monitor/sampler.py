"""The sampler process and the runner's handle on it.

NVML calls take milliseconds; they must not sit in a tenant's loop or the launcher's, so the
reader runs in its own process. The runner labels it with the launch that is running (phase,
repeat, launch = the solo tenant's name or "shared"); between launches it sleeps. Rows come back
at the end of every launch with the host clock (perf_counter_ns, like samples.parquet's start_ns),
so they line up with the common window. TENANCY_MONITOR_READER=module:callable replaces the NVML
reader (testing only).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

import pandas as pd

from tenancy.core import results
from tenancy.core.exit import exits_quickly
from tenancy.core.signals import PARENT_GONE, children_start_held, ignore_group_signals
from tenancy.gpu.monitor.gpu_table import foreign_processes, foreign_warnings, frame, launch_summary, our_pids, window
from tenancy.gpu.monitor.nvml import make_reader

READER_ENV = "TENANCY_MONITOR_READER"
NVML_READER = "tenancy.gpu.monitor.nvml:NvmlReader"
START_TIMEOUT_S = 60.0


class Monitor:
    """The runner's handle on the sampler; every method is a no-op while the monitor is off."""

    def __init__(self, interval_ms: int, device: str, reader: str | None = None) -> None:
        self.interval_ms = interval_ms
        self.device = device
        self.reader = reader or os.environ.get(READER_ENV)
        self.info: dict[str, Any] = {"enabled": False, "interval_ms": interval_ms}
        self.rows: list[dict[str, Any]] = []
        self._proc = None
        self._conn = None

    def start(self) -> None:
        if self.interval_ms <= 0:
            self.info["reason"] = "monitor_interval_ms is 0"
            return
        if self.reader is None and self.device != "cuda":
            self.info["reason"] = f"device is {self.device}: no GPU to monitor"
            return
        spec = self.reader or NVML_READER
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=sampler_main, args=(child, spec, None, self.interval_ms / 1000),
                                 name="tenancy:monitor", daemon=True)
        with children_start_held():
            self._proc.start()
        child.close()
        msg = self._conn.recv() if self._conn.poll(START_TIMEOUT_S) else ("off", "sampler did not start")
        if msg[0] != "ready":
            self.info["reason"] = msg[1]
            self._shutdown()
            return
        self.info.update({"enabled": True, "reader": spec, "device": msg[1], "file": results.GPU})

    @contextmanager
    def during(self, phase: str, repeat: int, launch: str) -> Iterator[None]:
        """Sample while the block runs; the rows are kept even when the block raises."""
        if self._proc is None:
            yield
            return
        self._send(("label", phase, repeat, launch))
        try:
            yield
        finally:
            self._collect(("flush",))

    def stop(self) -> None:
        if self._proc is not None:
            self._collect(("stop",))
            self._shutdown()

    def _send(self, cmd: tuple) -> bool:
        try:
            self._conn.send(cmd)
            return True
        except (OSError, EOFError, BrokenPipeError):
            self._lost()
            return False

    def _collect(self, cmd: tuple) -> None:
        if not self._send(cmd):
            return
        try:
            if self._conn.poll(30):
                self.rows.extend(self._conn.recv()[1])
                return
        except (OSError, EOFError):
            pass
        self._lost()

    def _lost(self) -> None:
        self.info["lost"] = "the sampler process stopped answering; rows after that are missing"
        self._shutdown()

    def _shutdown(self) -> None:
        if self._proc is not None:
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
                self._proc.join(5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def table(self, samples: pd.DataFrame, manifest: dict[str, Any]) -> tuple[pd.DataFrame, list[dict], list[str]]:
        """gpu.parquet's rows marked against the windows, the per-launch summary and the warnings
        (processes on the GPU that are not ours); empty when nothing was sampled."""
        if not self.rows:
            return pd.DataFrame(), [], []
        gpu = window(frame(self.rows), samples)
        foreign = foreign_processes(gpu, our_pids(manifest))
        self.info["foreign_processes"] = foreign
        return gpu, launch_summary(gpu, samples), foreign_warnings(foreign)


def sample_loop(reader, conn, interval_s: float, clock=time.perf_counter_ns) -> None:
    """Serve commands on `conn` and sample `reader` every `interval_s` while labelled.

    Commands: ("label", phase, repeat, launch) starts sampling; ("flush",) stops it and answers
    ("rows", rows); ("stop",) answers the same and ends the loop (so does a closed pipe).
    """
    rows: list[dict[str, Any]] = []
    label: tuple | None = None
    next_t = time.monotonic()
    while True:
        wait = max(0.0, next_t - time.monotonic()) if label else None
        try:
            has_cmd = conn.poll(wait)
            cmd = conn.recv() if has_cmd else None
        except (EOFError, OSError):
            return
        if cmd is not None:
            if cmd[0] == "label":
                label, next_t = tuple(cmd[1:]), time.monotonic()
            elif cmd[0] in ("flush", "stop"):
                label = None
                conn.send(("rows", rows))
                rows = []
                if cmd[0] == "stop":
                    return
            continue
        t = clock()
        try:
            sample = reader.read()
        except Exception as err:  # one bad read is a row with the error, not the end of monitoring
            sample = {"error": f"{type(err).__name__}: {err}"}
        rows.append({"phase": label[0], "repeat": label[1], "launch": label[2], "time_ns": t, **sample})
        next_t = max(next_t + interval_s, time.monotonic())


@exits_quickly
def sampler_main(conn, spec: str, gpu: str | None, interval_s: float) -> None:
    """Entry point of the sampler process."""
    ignore_group_signals()  # the parent stops us
    try:
        _sample(conn, spec, gpu, interval_s)
    except PARENT_GONE:
        pass  # the runner is gone (interrupted): nobody to send samples to


def _sample(conn, spec: str, gpu: str | None, interval_s: float) -> None:
    try:
        reader = make_reader(spec, gpu)
    except Exception as err:
        conn.send(("off", f"cannot read the GPU: {type(err).__name__}: {' '.join(str(err).split())[:200]}"))
        return
    try:
        conn.send(("ready", reader.describe()))
        sample_loop(reader, conn, interval_s)
    finally:
        reader.close()


