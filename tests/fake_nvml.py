"""A stand-in for the NVML reader (tests only): a 200 W GPU with a foreign process on it.

Used through TENANCY_MONITOR_READER=fake_nvml:FakeReader (tests/ on PYTHONPATH)."""
import time

POWER_W = 200.0
FOREIGN_PID = 4_000_000  # above Linux's pid_max: never one of ours


class FakeReader:
    def __init__(self, gpu=None):
        self.t0 = time.perf_counter()
        self.n = 0

    def describe(self):
        return {"gpu": "0", "name": "Fake GPU", "uuid": "GPU-fake"}

    def read(self):
        self.n += 1
        t = time.perf_counter() - self.t0
        return {"gpu_util_pct": 50 + self.n % 2 * 10, "mem_util_pct": 20, "mem_used_mib": 1000 + self.n,
                "mem_total_mib": 80000, "sm_clock_mhz": 1500, "mem_clock_mhz": 2600, "power_w": POWER_W,
                "energy_j": 1e6 + POWER_W * t, "temperature_c": 60, "throttle_reasons": 0x1,
                "throttle": "GpuIdle", "processes": [(FOREIGN_PID, 512.0)]}

    def close(self):
        pass
