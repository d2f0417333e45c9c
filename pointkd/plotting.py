"""Figures without a display: the Agg backend, a labelled [0, 1] heat map, and writing a PNG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(
    values: Any,
    columns: Sequence[str],
    rows: Sequence[str],
    xlabel: str,
    ylabel: str,
    title: str,
    figsize: tuple[float, float],
    cmap: str = "Blues",
    tick_fontsize: float | None = None,
    annotate: bool = False,
):
    """A figure of ``values`` (a 2-D array in [0, 1]) with named columns and rows and a colour bar; ``annotate``
    writes each value in its cell."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=figsize)
    im = ax.imshow(values, cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks(range(len(columns)), columns, rotation=90 if len(columns) > 12 else 0, fontsize=tick_fontsize)
    ax.set_yticks(range(len(rows)), rows, fontsize=tick_fontsize)
    if annotate:
        for i in range(len(rows)):
            for j in range(len(columns)):
                v = float(values[i][j])
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def save_png(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made as needed) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
