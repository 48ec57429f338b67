"""Measure transformer models co-located on a shared NVIDIA GPU."""
__version__ = "0.1.0"
