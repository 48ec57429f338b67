"""What every report figure shares: the figure record, the per-figure style, saving a PNG, colours.

Figures are drawn with seaborn on the Agg backend, the colour-blind palette, units on every axis,
and print-sized fonts; styles are applied per figure (context managers), never globally.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from tenancy.report.stats import BASIS_TEXT  # noqa: E402

DPI = 150
PALETTE = "colorblind"


def figure(fid: str, title: str, caption: str, file: str | None = None, table: pd.DataFrame | None = None,
           note: str = "") -> dict[str, Any]:
    """A figure record (plain data): file is relative to the report directory, None when skipped."""
    return {"id": fid, "title": title, "caption": caption, "file": file, "table": table, "note": note}


@contextmanager
def figure_style() -> Iterator[None]:
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.25):
        yield


def save_png(fig, out: Path, name: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return f"{out.name}/{name}"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


def palette(keys: list[str]) -> dict[str, Any]:
    return dict(zip(keys, sns.color_palette(PALETTE, max(len(keys), 1))))


def intervals_caption(df: pd.DataFrame) -> str:
    """What the intervals of a figure cover, from its rows' `basis` column."""
    if df.empty or "basis" not in df:
        return ""
    counts = df.drop_duplicates([c for c in ("label", "sharing", "basis", "processes") if c in df])["basis"]
    counts = counts.value_counts()
    parts = [f"{BASIS_TEXT[b]} ({n} tenant set{'s' if n > 1 else ''})" for b, n in counts.items() if b in BASIS_TEXT]
    return " Intervals: " + "; ".join(parts) + "." if parts else ""


def mode_order(df: pd.DataFrame) -> list[str]:
    order = ["timeslice", "mps", "streams"]
    present = list(dict.fromkeys(df["sharing"]))
    return [m for m in order if m in present] + [m for m in present if m not in order]
