"""A stand-in for pynvml (nvidia-ml-py) over a made-up machine (tests only).

Put this directory first on sys.path (or PYTHONPATH) and name a JSON file in FAKE_NVML_CONFIG:
    {"driver": "550.54.15", "cuda": 12040,
     "gpus": [{"name": ..., "uuid": "GPU-...", "memory_total_mib": 81559, "memory_used_mib": 0,
               "compute_mode": 0, "persistence": 1, "mig": null, "arch": 9, "processes": [[pid, MiB]]}],
     "missing": ["nvmlDeviceGetComputeRunningProcesses_v3", ...],   # symbols this driver lacks
     "unsupported": ["nvmlDeviceGetPowerUsage", ...],               # NVML_ERROR_NOT_SUPPORTED
     "no_driver": false}                                            # nvmlInit: library not found
Errors are the real pynvml's classes, raised where the real one raises them: a symbol the driver
lacks is NVMLError_FunctionNotFound from the versioned call, and NVMLLibraryMismatchError (a plain
Exception) from an unversioned wrapper such as nvmlDeviceGetComputeRunningProcesses; a card without
MIG answers nvmlDeviceGetMigMode with NVMLError_NotSupported; an unknown UUID is NVMLError_NotFound.
Constants (clock event reasons, compute modes, ...) are the real module's.
"""
import importlib.util
import json
import os
import sys
import time
from types import SimpleNamespace

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_real():
    for entry in sys.path:
        path = os.path.join(entry or ".", "pynvml.py")
        if os.path.abspath(os.path.dirname(path)) != _HERE and os.path.isfile(path):
            spec = importlib.util.spec_from_file_location("_real_pynvml", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["_real_pynvml"] = module
            spec.loader.exec_module(module)
            return module
    raise ImportError("the real pynvml (nvidia-ml-py) is not installed")


_real = sys.modules.get("_real_pynvml") or _load_real()
globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})

_state = {"config": None, "t0": time.monotonic()}


def _config():
    if _state["config"] is None:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)
    return _state["config"]


def _call(symbol):
    """What _nvmlGetFunctionPointer and the driver's return code decide before any answer."""
    cfg = _config()
    if symbol in cfg.get("missing", []):
        raise NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)
    if symbol in cfg.get("unsupported", []):
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return cfg


def _gpu(handle, symbol):
    return _call(symbol)["gpus"][handle.index]


def nvmlInit():
    path = os.environ.get("FAKE_NVML_CONFIG")
    cfg = json.load(open(path)) if path else {"no_driver": True}
    if cfg.get("no_driver"):
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    _state["config"] = cfg


def nvmlShutdown():
    _config()
    _state["config"] = None


def nvmlSystemGetDriverVersion():
    return _call("nvmlSystemGetDriverVersion")["driver"]


def nvmlSystemGetCudaDriverVersion_v2():
    return _call("nvmlSystemGetCudaDriverVersion_v2")["cuda"]


def nvmlDeviceGetCount():
    return len(_call("nvmlDeviceGetCount_v2")["gpus"])


def nvmlDeviceGetHandleByIndex(index):
    if not 0 <= index < len(_call("nvmlDeviceGetHandleByIndex_v2")["gpus"]):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return SimpleNamespace(index=index)


def nvmlDeviceGetHandleByUUID(uuid):
    for i, g in enumerate(_call("nvmlDeviceGetHandleByUUID")["gpus"]):
        if g["uuid"] == uuid:
            return SimpleNamespace(index=i)
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetName(handle):
    return _gpu(handle, "nvmlDeviceGetName")["name"]


def nvmlDeviceGetUUID(handle):
    return _gpu(handle, "nvmlDeviceGetUUID")["uuid"]


def nvmlDeviceGetMemoryInfo(handle, version=None):
    g = _gpu(handle, "nvmlDeviceGetMemoryInfo")
    total, used = g["memory_total_mib"] * 2**20, g.get("memory_used_mib", 0) * 2**20
    return SimpleNamespace(total=total, used=used, free=total - used)


def nvmlDeviceGetComputeMode(handle):
    return _gpu(handle, "nvmlDeviceGetComputeMode").get("compute_mode", NVML_COMPUTEMODE_DEFAULT)


def nvmlDeviceGetPersistenceMode(handle):
    return _gpu(handle, "nvmlDeviceGetPersistenceMode").get("persistence", 1)


def nvmlDeviceGetMigMode(handle):
    mig = _gpu(handle, "nvmlDeviceGetMigMode").get("mig")
    if mig is None:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return list(mig)


def nvmlDeviceGetArchitecture(handle):
    return _gpu(handle, "nvmlDeviceGetArchitecture").get("arch", NVML_DEVICE_ARCH_HOPPER)


def nvmlDeviceGetMaxClockInfo(handle, clock):
    _gpu(handle, "nvmlDeviceGetMaxClockInfo")
    return 1980


def nvmlDeviceGetClockInfo(handle, clock):
    _gpu(handle, "nvmlDeviceGetClockInfo")
    return 1755 if clock == NVML_CLOCK_SM else 2619


def nvmlDeviceGetPowerManagementLimit(handle):
    _gpu(handle, "nvmlDeviceGetPowerManagementLimit")
    return 700_000


def nvmlDeviceGetUtilizationRates(handle):
    _gpu(handle, "nvmlDeviceGetUtilizationRates")
    return SimpleNamespace(gpu=87, memory=41)


def nvmlDeviceGetPowerUsage(handle):
    _gpu(handle, "nvmlDeviceGetPowerUsage")
    return 350_000


def nvmlDeviceGetTotalEnergyConsumption(handle):
    _gpu(handle, "nvmlDeviceGetTotalEnergyConsumption")
    return int(1e9 + 350_000 * (time.monotonic() - _state["t0"]))


def nvmlDeviceGetTemperature(handle, sensor):
    _gpu(handle, "nvmlDeviceGetTemperature")
    return 61


def nvmlDeviceGetCurrentClocksEventReasons(handle):
    return _gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").get("reasons", 0)


def nvmlDeviceGetCurrentClocksThrottleReasons(handle):
    return _gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").get("reasons", 0)


def _processes(handle, symbol):
    g = _gpu(handle, symbol)
    return [SimpleNamespace(pid=pid, usedGpuMemory=int(mib * 2**20), gpuInstanceId=0xFFFFFFFF,
                            computeInstanceId=0xFFFFFFFF) for pid, mib in g.get("processes", [])]


def nvmlDeviceGetComputeRunningProcesses_v3(handle):
    return _processes(handle, "nvmlDeviceGetComputeRunningProcesses_v3")


def nvmlDeviceGetComputeRunningProcesses_v2(handle):
    return _processes(handle, "nvmlDeviceGetComputeRunningProcesses_v2")


@throwOnVersionMismatch
def nvmlDeviceGetComputeRunningProcesses(handle):
    return nvmlDeviceGetComputeRunningProcesses_v3(handle)
