"""The GPU monitor: NVML samples every few tens of milliseconds while a launch runs.

`nvml` reads one GPU, `sampler` runs the reader in its own process for the runner, `gpu_table`
turns the rows into gpu.parquet and a per-launch summary over each common window. Without a GPU,
without NVML, or with `monitor_interval_ms: 0` the monitor is off, the manifest says why, and the
run goes on.
"""
from tenancy.gpu.monitor.gpu_table import foreign_processes, foreign_warnings, frame, launch_summary, our_pids, window
from tenancy.gpu.monitor.nvml import NvmlReader
from tenancy.gpu.monitor.sampler import READER_ENV, Monitor, sample_loop

__all__ = ["READER_ENV", "Monitor", "NvmlReader", "foreign_processes", "foreign_warnings", "frame",
           "launch_summary", "our_pids", "sample_loop", "window"]
