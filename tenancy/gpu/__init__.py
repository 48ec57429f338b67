"""The machine: devices, environment capture, host load, peak rates, the MPS daemon, NVML monitoring, Nsight."""
