"""Sharing modes: how the tenants of the shared phase get onto the device together.

A mode checks that it can run here, owns whatever must live around the shared phase (the MPS
daemon), gives each tenant its environment, and launches the tenants (processes, or threads
with a CUDA stream each). The solo phase always runs as plain processes.
"""
from __future__ import annotations

from tenancy.core.errors import TenancyError
from tenancy.harness.sharing.base import Env, SharingMode, recorded_env

__all__ = ["Env", "SharingMode", "get", "recorded_env"]


def get(config, device: str = "cpu") -> SharingMode:
    """The mode a scenario's sharing block names, with its settings, on `device`."""
    from tenancy.harness.sharing.mps import MpsMode
    from tenancy.harness.sharing.streams import StreamsMode

    modes: dict[str, type[SharingMode]] = {"exclusive": SharingMode, "timeslice": SharingMode,
                                           "mps": MpsMode, "streams": StreamsMode}
    if config.mode not in modes:
        raise TenancyError(f"sharing mode {config.mode!r} is not available in this version")
    return modes[config.mode](config, device)
