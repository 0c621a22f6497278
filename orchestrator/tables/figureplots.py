"""Drawing a ``FigureData`` (``orchestrator.tables.figuredata``) with matplotlib (Agg): exactly its arrays, nothing
recomputed, so what a test checks in the data is what the picture shows."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

from orchestrator.plots.plotting import pyplot
from orchestrator.tables.figuredata import FigureData, Panel

__all__ = ["render_figure", "save_figure"]

PUBLISHED_MARKER = {"marker": "*", "s": 90, "edgecolors": "black", "linewidths": 0.6, "zorder": 5}


def render_figure(data: FigureData) -> Any:
    """A matplotlib ``Figure``, one axes per panel (the caller saves or inspects it, then closes it)."""
    plt = pyplot()
    n = max(1, len(data.panels))
    cols = min(n, data.columns)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(data.panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, data.panels):
        {"line": _line, "bar": _bar, "heatmap": _heatmap}[data.kind](ax, panel)
        ax.set_title(panel.title, fontsize=9)
        if data.kind != "heatmap":
            ax.set_xlabel(data.xlabel, fontsize=8)
            ax.set_ylabel(data.ylabel, fontsize=8)
            if panel.series or panel.band:
                ax.legend(fontsize=6)
    if data.title:  # wrapped to the page: a paper's caption is longer than one narrow panel
        width = fig.get_size_inches()[0]
        fig.suptitle(textwrap.fill(data.title, max(30, int(width * 13))), fontsize=10)
    fig.tight_layout()
    return fig


def _band(ax: Any, panel: Panel) -> None:
    band = panel.band
    if band is None or math.isnan(band.y):
        return
    line = ax.axhline(band.y, linestyle="--", color="dimgray", label=f"{band.label} (n={band.n})")
    if band.err:
        ax.axhspan(band.y - band.err, band.y + band.err, color=line.get_color(), alpha=0.15)
    if band.published is not None:
        ax.axhline(band.published, linestyle=":", color="black", label=f"{band.label}, published")


def _published(ax: Any, xs: Sequence[float], published: Sequence[float | None], color: Any, label: str) -> None:
    points = [(x, p) for x, p in zip(xs, published) if p is not None]
    if points:
        ax.scatter([x for x, _ in points], [p for _, p in points], color=color, label=f"{label}, published",
                   **PUBLISHED_MARKER)


def _line(ax: Any, panel: Panel) -> None:
    for s in panel.series:
        bars = ax.errorbar(s.x, s.y, yerr=s.err, marker="o", capsize=3, label=s.label)
        _published(ax, s.x, s.published, bars.lines[0].get_color(), s.label)
    _band(ax, panel)
    ax.set_xticks(panel.ticks, panel.tick_labels, fontsize=7)


def _bar(ax: Any, panel: Panel) -> None:
    width = 0.8 / max(1, len(panel.series))
    for i, s in enumerate(panel.series):
        xs = [x + (i - (len(panel.series) - 1) / 2) * width for x in s.x]
        bars = ax.bar(xs, s.y, width, yerr=s.err, capsize=2, label=s.label)
        _published(ax, xs, s.published, bars.patches[0].get_facecolor() if bars.patches else None, s.label)
    _band(ax, panel)
    ax.set_xticks(panel.ticks, panel.tick_labels, fontsize=7, rotation=45 if len(panel.ticks) > 5 else 0,
                  ha="right" if len(panel.ticks) > 5 else "center")
    finite = [y for s in panel.series for y in s.y if not math.isnan(y)]
    if finite:  # accuracy bars differ by points: start the axis near them, not at 0
        low, high = min(finite), max(finite)
        pad = max(1.0, (high - low) * 0.5)
        ax.set_ylim(max(0.0, low - pad), high + pad)


def _heatmap(ax: Any, panel: Panel) -> None:
    import numpy as np

    column = {x: j for j, x in enumerate(panel.ticks)}
    matrix = np.full((len(panel.series), len(panel.ticks)), np.nan)
    for i, s in enumerate(panel.series):
        for x, y in zip(s.x, s.y):
            matrix[i, column[x]] = y
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=6, color="white")
    ax.set_xticks(range(len(panel.ticks)), panel.tick_labels, fontsize=7)
    ax.set_yticks(range(len(panel.series)), [s.label for s in panel.series], fontsize=7)
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def save_figure(data: FigureData, stem: Path, formats: Sequence[str]) -> list[Path]:
    """``stem.<format>`` for each format (png, svg, pdf); returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    fig = render_figure(data)
    paths = []
    try:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            fig.savefig(path, dpi=120)
            paths.append(path)
    finally:
        pyplot().close(fig)
    return paths
