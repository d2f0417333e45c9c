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


def line_panels(
    panels: dict[str, dict[str, Sequence[float]]],
    x: Sequence[Any],
    xlabel: str,
    ylabel: str,
    title: str,
    styles: dict[str, dict[str, Any]] | None = None,
    references: dict[str, float] | None = None,
    reference_label: str = "reference",
    columns: int = 4,
    panel_size: tuple[float, float] = (3.2, 2.6),
    ylim: tuple[float, float] | None = None,
):
    """One small plot per panel (``panels[name][line]`` = one y per ``x``), every panel with the same lines,
    ``styles[line]`` (matplotlib keyword arguments: colour, linestyle, marker), an optional dotted horizontal
    ``references[name]`` per panel (legend ``reference_label``), and one legend in the last free cell (or under
    the grid)."""
    plt = pyplot()
    names = list(panels)
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(panel_size[0] * columns, panel_size[1] * rows), squeeze=False, sharey=True
    )
    styles = styles or {}
    handles: dict[str, Any] = {}
    for ax, name in zip(axes.flat, names, strict=False):
        for line, ys in panels[name].items():
            (h,) = ax.plot(list(x), list(ys), label=line, **styles.get(line, {}))
            handles[line] = h
        if references and name in references:
            h = ax.axhline(references[name], color="grey", linestyle=":", linewidth=1)
            handles.setdefault(reference_label, h)
        ax.set_title(name, fontsize=10)
        ax.set_xticks(list(x))
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(alpha=0.3)
        if ylim:
            ax.set_ylim(*ylim)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    free = list(axes.flat)[len(names) :]
    for ax in free:
        ax.axis("off")
    labels = list(handles)
    if free:
        free[-1].legend([handles[k] for k in labels], labels, loc="center", fontsize=7, frameon=False)
    else:
        fig.legend([handles[k] for k in labels], labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=11)
    return fig
