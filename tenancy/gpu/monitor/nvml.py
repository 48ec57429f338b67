"""One sample of one GPU through NVML, each field from the first call this driver answers."""
from __future__ import annotations

import importlib
import os
from typing import Any

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
