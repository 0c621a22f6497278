"""The arrays a figure shows, as plain data: per panel, per series, the x positions, means, error bars, counts
and published values, and the baseline band. ``orchestrator.tables.figures`` computes them from a table,
``orchestrator.tables.figureplots`` hands them to matplotlib unchanged; both import these types from here."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Band", "FigureData", "Panel", "Series"]


@dataclass(frozen=True)
class Series:
    label: str
    x: list[float]  # positions on the x axis (the x param's values when numeric, else tick positions)
    y: list[float]  # mean over seeds (nan where the cell has no run)
    err: list[float]  # half-height of the error bar (0 with fewer than 2 runs or error: none)
    n: list[int]
    published: list[float | None]


@dataclass(frozen=True)
class Band:
    """The table baseline's cell in a panel (GMConv Fig. 6's "None"): a horizontal line and its spread."""

    label: str
    y: float
    err: float
    n: int
    published: float | None


@dataclass(frozen=True)
class Panel:
    title: str
    ticks: list[float]
    tick_labels: list[str]
    series: list[Series]
    band: Band | None = None


@dataclass(frozen=True)
class FigureData:
    kind: str
    title: str
    xlabel: str
    ylabel: str
    panels: list[Panel] = field(default_factory=list)
    columns: int = 3
