"""The GPU monitor: NVML samples every few tens of milliseconds while a launch runs.

The sampler is its own process (NVML calls take milliseconds; they must not sit in a tenant's
loop or the launcher's). The runner labels it with the launch that is running (phase, repeat,
launch = the solo tenant's name or "shared"); between launches it sleeps. Rows come back at the
end of every launch and are written to gpu.parquet with the host clock (perf_counter_ns, like
samples.parquet's start_ns), so they line up with the common window: the per-launch summary
(utilisation, peak memory, energy and joules per item) covers that window only.

Without a GPU, without NVML, or with `monitor_interval_ms: 0` the monitor is off, the manifest
says why, and the run goes on. TENANCY_MONITOR_READER=module:callable replaces the NVML reader
(testing only).
"""
from __future__ import annotations

import importlib
import json
import multiprocessing as mp
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

GPU_FILE = "gpu.parquet"
READER_ENV = "TENANCY_MONITOR_READER"
NVML_READER = "tenancy.monitor:NvmlReader"
START_TIMEOUT_S = 60.0
FIELDS = ("gpu_util_pct", "mem_util_pct", "mem_used_mib", "mem_total_mib", "sm_clock_mhz", "mem_clock_mhz",
          "power_w", "energy_j", "temperature_c", "throttle_reasons", "throttle", "n_processes", "processes")
THROTTLING_BITS = 0x4 | 0x8 | 0x20 | 0x40 | 0x80 | 0x200 | 0x400
"""Clock event reasons that are throttling: SW power cap, HW slowdown, SW/HW thermal slowdown, HW
power brake, board limit, reliability. Not: GPU idle (0x1), application clocks setting (0x2), sync
boost (0x10), display clock setting (0x100), which limit clocks by choice or by design."""
POWER_NOTE = ("power_w is nvmlDeviceGetPowerUsage: a 1 s average on Ampere (except GA100: A100, A30) and newer "
              "(H100, H200), instantaneous on GA100 and older; energy_j, the total-energy counter, means the same "
              "everywhere and is what every energy figure uses")
# Per field, NVML calls in order of preference: a driver may lack the newer one (clock *event*
# reasons since R535; the _v3 process list), pynvml then raises NVMLError_FunctionNotFound, or
# NVMLLibraryMismatchError (a plain Exception) from its unversioned wrappers.
SOURCES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "utilization": (("nvmlDeviceGetUtilizationRates", ()),),
    "memory": (("nvmlDeviceGetMemoryInfo", ()),),
    "sm_clock": (("nvmlDeviceGetClockInfo", ("NVML_CLOCK_SM",)),),
    "mem_clock": (("nvmlDeviceGetClockInfo", ("NVML_CLOCK_MEM",)),),
    "power": (("nvmlDeviceGetPowerUsage", ()),),
    "energy": (("nvmlDeviceGetTotalEnergyConsumption", ()),),
    "temperature": (("nvmlDeviceGetTemperature", ("NVML_TEMPERATURE_GPU",)),),
    "clock_reasons": (("nvmlDeviceGetCurrentClocksEventReasons", ()),
                      ("nvmlDeviceGetCurrentClocksThrottleReasons", ())),
    "processes": (("nvmlDeviceGetComputeRunningProcesses", ()), ("nvmlDeviceGetComputeRunningProcesses_v2", ())),
}


class NvmlReader:
    """One sample of one GPU through NVML; a field this driver does not answer is None, and the
    reason is kept in `errors` (each field fails alone)."""

    def __init__(self, gpu: str | None = None) -> None:
        import pynvml

        self.nvml = pynvml
        pynvml.nvmlInit()
        gpu = gpu if gpu is not None else os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
        self.handle = (pynvml.nvmlDeviceGetHandleByIndex(int(gpu)) if gpu.isdigit()
                       else pynvml.nvmlDeviceGetHandleByUUID(gpu))
        self.gpu = gpu
        prefix = "nvmlClocksEventReason" if hasattr(pynvml, "nvmlClocksEventReasonGpuIdle") else "nvmlClocksThrottleReason"
        self.reasons = {name[len(prefix):]: getattr(pynvml, name) for name in dir(pynvml)
                        if name.startswith(prefix) and name[len(prefix):] not in ("All", "None", "Unknown")}
        self.sources = {field: list(chain) for field, chain in SOURCES.items()}
        self.used: dict[str, str] = {}
        self.errors: dict[str, str] = {}

    def describe(self) -> dict[str, Any]:
        self.read()  # one sample decides which call answers each field
        arch = self._call("nvmlDeviceGetArchitecture", ())
        names = {getattr(self.nvml, k): k.removeprefix("NVML_DEVICE_ARCH_").lower() for k in dir(self.nvml)
                 if k.startswith("NVML_DEVICE_ARCH_")}
        return {"gpu": self.gpu, "name": self._call("nvmlDeviceGetName", ()),
                "uuid": self._call("nvmlDeviceGetUUID", ()), "architecture": names.get(arch, arch),
                "fields": dict(self.used), "fields_unanswered": dict(self.errors), "power_note": POWER_NOTE}

    def _call(self, name: str, args: tuple[str, ...]):
        """One NVML call on our GPU; raises whatever pynvml raises."""
        fn = getattr(self.nvml, name, None)
        if fn is None:
            raise AttributeError(f"pynvml has no {name}")
        return fn(self.handle, *(getattr(self.nvml, a) for a in args))

    def _value(self, field: str):
        """The field from the first call that answers; that call is tried first from then on."""
        chain = self.sources[field]
        failures = []
        for i, (name, args) in enumerate(chain):
            try:
                value = self._call(name, args)
            except Exception as err:  # NVMLError, NVMLLibraryMismatchError, AttributeError: this call only
                failures.append(f"{name}: {type(err).__name__}: {' '.join(str(err).split())[:120]}")
                continue
            chain.insert(0, chain.pop(i))
            self.used[field] = name
            self.errors.pop(field, None)
            return value
        self.errors[field] = "; ".join(failures)
        return None

    def read(self) -> dict[str, Any]:
        util = self._value("utilization")
        mem = self._value("memory")
        power = self._value("power")
        energy = self._value("energy")
        mask = self._value("clock_reasons")
        procs = self._value("processes") or []
        return {
            "gpu_util_pct": util.gpu if util else None,
            "mem_util_pct": util.memory if util else None,
            "mem_used_mib": mem.used / 2**20 if mem else None,
            "mem_total_mib": mem.total / 2**20 if mem else None,
            "sm_clock_mhz": self._value("sm_clock"),
            "mem_clock_mhz": self._value("mem_clock"),
            "power_w": power / 1000 if power is not None else None,
            "energy_j": energy / 1000 if energy is not None else None,
            "temperature_c": self._value("temperature"),
            "throttle_reasons": mask,
            "throttle": "|".join(k for k, bit in self.reasons.items() if mask and mask & bit) if mask is not None else None,
            "processes": [(p.pid, (p.usedGpuMemory or 0) / 2**20) for p in procs],
        }

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass


def make_reader(spec: str, gpu: str | None = None):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)(gpu)


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


def sampler_main(conn, spec: str, gpu: str | None, interval_s: float) -> None:
    """Entry point of the sampler process."""
    for sig in (signal.SIGINT, signal.SIGHUP):  # sent to the whole group; the runner stops us after saving
        signal.signal(sig, signal.SIG_IGN)
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
        self._proc.start()
        child.close()
        msg = self._conn.recv() if self._conn.poll(START_TIMEOUT_S) else ("off", "sampler did not start")
        if msg[0] != "ready":
            self.info["reason"] = msg[1]
            self._shutdown()
            return
        self.info.update({"enabled": True, "reader": spec, "device": msg[1], "file": GPU_FILE})

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

    def write(self, run_dir: Path, samples: pd.DataFrame, manifest: dict[str, Any]) -> tuple[list[dict], list[str]]:
        """Write gpu.parquet; return the per-launch summary and the warnings (foreign processes)."""
        if not self.rows:
            return [], []
        from tenancy import results

        gpu = frame(self.rows)
        gpu = mark_window(gpu, samples)
        results.write_table(run_dir / GPU_FILE, gpu)
        foreign = foreign_processes(gpu, our_pids(manifest))
        self.info["foreign_processes"] = foreign
        return summarize(gpu, samples), foreign_warnings(foreign)


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a table with fixed columns; processes become JSON text ([[pid, MiB], ...])."""
    df = pd.DataFrame(rows)
    for col in FIELDS:
        if col not in df:
            df[col] = None
    procs = df["processes"].apply(lambda p: p if isinstance(p, (list, tuple)) else [])
    df["n_processes"] = procs.apply(len).astype("int64")
    df["processes"] = procs.apply(lambda p: json.dumps([[int(pid), round(float(mib), 1)] for pid, mib in p]))
    for col in FIELDS:
        if col not in ("throttle", "processes", "n_processes"):
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["throttle"] = df["throttle"].astype("string")
    df["repeat"] = df["repeat"].astype("int64")
    df["time_ns"] = df["time_ns"].astype("int64")
    return df


def _window(samples: pd.DataFrame, phase: str, repeat: int, launch: str) -> pd.DataFrame:
    if samples.empty:
        return samples
    s = samples[(samples["phase"] == phase) & (samples["repeat"] == repeat)]
    if launch != "shared":
        s = s[s["tenant"] == launch]
    return s[s["in_window"]]


def mark_window(gpu: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """in_window: the row was taken inside its launch's common window."""
    gpu = gpu.copy()
    gpu["in_window"] = False
    for (phase, repeat, launch), g in gpu.groupby(["phase", "repeat", "launch"]):
        w = _window(samples, phase, repeat, launch)
        if not w.empty:
            t = g["time_ns"]
            gpu.loc[g.index, "in_window"] = (t >= w["start_ns"].min()) & (t <= w["end_ns"].max())
    return gpu


def energy_j(g: pd.DataFrame, start_ns: int | None = None, end_ns: int | None = None) -> float:
    """Energy from start to end (default: the rows' span): the NVML counter interpolated at both
    ends, else the power integrated over time; NaN when the rows do not cover the span."""
    for col in ("energy_j", "power_w"):
        r = g[["time_ns", col]].dropna().sort_values("time_ns")
        if len(r) < 2:
            continue
        t, v = r["time_ns"].to_numpy(dtype=float), r[col].to_numpy(dtype=float)
        a = t[0] if start_ns is None else float(start_ns)
        b = t[-1] if end_ns is None else float(end_ns)
        if a < t[0] or b > t[-1] or b <= a:
            return float("nan")
        if col == "energy_j":
            return float(np.interp(b, t, v) - np.interp(a, t, v))
        inside = (t > a) & (t < b)
        ts = np.concatenate([[a], t[inside], [b]])
        ws = np.interp(ts, t, v)
        return float(np.sum((ws[1:] + ws[:-1]) / 2 * np.diff(ts)) / 1e9)
    return float("nan")


def summarize(gpu: pd.DataFrame, samples: pd.DataFrame) -> list[dict[str, Any]]:
    """Per launch, over its common window: utilisation, peak memory, power, energy, J per item."""
    out = []
    for (phase, repeat, launch), g in gpu.groupby(["phase", "repeat", "launch"], sort=False):
        w = _window(samples, phase, repeat, launch)
        gw = g[g["in_window"]] if "in_window" in g else g
        items = int(w["batch"].sum()) if not w.empty else 0
        tokens = int((w["batch"] * w["new_tokens"]).where(w["task"] == "generate", 0).sum()) if not w.empty else 0
        start, end = (int(w["start_ns"].min()), int(w["end_ns"].max())) if not w.empty else (None, None)
        energy = energy_j(g, start, end)  # all rows of the launch: the counter is interpolated at the edges
        mask = gw["throttle_reasons"].dropna().astype("int64")

        def mean(col: str) -> float | None:
            v = gw[col].mean()
            return None if pd.isna(v) else float(v)

        def peak(col: str) -> float | None:
            v = gw[col].max()
            return None if pd.isna(v) else float(v)

        out.append({
            "phase": phase, "repeat": int(repeat), "launch": launch, "rows": int(len(gw)),
            "window_s": (float(w["end_ns"].max() - w["start_ns"].min()) / 1e9) if not w.empty else None,
            "gpu_util_mean_pct": mean("gpu_util_pct"), "mem_util_mean_pct": mean("mem_util_pct"),
            "mem_used_peak_mib": peak("mem_used_mib"), "sm_clock_mean_mhz": mean("sm_clock_mhz"),
            "power_mean_w": mean("power_w"), "temperature_max_c": peak("temperature_c"),
            "throttled_share": float(((mask & THROTTLING_BITS) != 0).mean()) if len(mask) else None,
            "energy_j": None if np.isnan(energy) else energy, "items": items,
            "j_per_item": energy / items if items and not np.isnan(energy) else None,
            "j_per_token": energy / tokens if tokens and not np.isnan(energy) else None,
        })
    return out


def our_pids(manifest: dict[str, Any]) -> set[int]:
    """Pids of this run: the CLI, every tenant process, and the MPS daemon and servers."""
    pids = {os.getpid()} | {t["pid"] for t in manifest.get("tenants", []) if t.get("pid")}
    sharing = manifest.get("sharing") or {}
    pids |= set(sharing.get("daemon_pids") or [])
    for a in sharing.get("attach") or []:
        pids |= set(a.get("servers") or [])
    return pids


def foreign_processes(gpu: pd.DataFrame, ours: set[int]) -> list[dict[str, Any]]:
    """Processes NVML saw on the GPU that are not ours, with their peak memory."""
    seen: dict[int, float] = {}
    for text in gpu["processes"]:
        for pid, mib in json.loads(text):
            seen[pid] = max(seen.get(pid, 0.0), mib)
    foreign = [{"pid": pid, "peak_mem_mib": mib} for pid, mib in sorted(seen.items()) if pid not in ours]
    if foreign and not (set(seen) & ours):
        for f in foreign:  # inside a container NVML may report host pids: none of ours would match
            f["note"] = "none of our pids were visible to NVML (a container's pid namespace?)"
    return foreign


def foreign_warnings(foreign: list[dict[str, Any]]) -> list[str]:
    if not foreign:
        return []
    listed = ", ".join(f"{f['pid']} ({f['peak_mem_mib']:.0f} MiB)" for f in foreign[:5])
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    hint = f"; {foreign[0]['note']}" if "note" in foreign[0] else ""
    return [f"foreign processes on the GPU during the run: pid {listed}{more}{hint}"]
