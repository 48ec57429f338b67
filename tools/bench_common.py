"""Shared by the serving benchmarks: rich tables, and a stream sync for timing."""
from __future__ import annotations

import torch


def table(title: str, columns: list[str], rows: list[list]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(*[f"{v:.3g}" if isinstance(v, float) else str(v) for v in r])
        Console(width=160).print(t)
    except ImportError:
        print(f"\n{title}\n" + " | ".join(columns))
        for r in rows:
            print(" | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.current_stream().synchronize()
