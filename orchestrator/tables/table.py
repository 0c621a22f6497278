"""A regenerated table as data: its cells (``Cell``), the whole grid (``Table``) and the comparable form of a
param value (``canon``) that rows, labels, baselines and published rows are matched by.

``orchestrator.tables.pivot`` fills a ``Table`` from runs; ``render`` prints it, ``figures`` draws it. This
module imports nothing of theirs, so each of them can import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.stats import Summary, summarize

__all__ = ["Cell", "Key", "Table", "canon"]

# the values of the row (or column) params, as MLflow logged them
Key = tuple[str, ...]


def canon(value: Any) -> tuple[str, Any]:
    """A comparable form of a param value: MLflow logs ``str(v)``, the YAML gives typed values."""
    if isinstance(value, bool):
        return ("b", value)
    if value is None:
        return ("none", None)
    if isinstance(value, (int, float)):
        return ("n", float(value))
    text = str(value)
    low = text.lower()
    if low in ("true", "false"):
        return ("b", low == "true")
    if low in ("none", "null", ""):
        return ("none", None)
    try:
        return ("n", float(text))
    except ValueError:
        return ("s", text)


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    summary: Summary = summarize(())
    expected_n: int | None = None
    published: float | None = None
    published_extra: dict[str, str] = field(default_factory=dict)  # reference.extra label -> the CSV's text
    baseline_mean: float | None = None
    is_baseline: bool = False
    t: float = math.nan
    p: float = math.nan

    @property
    def delta_published(self) -> float:
        return self.summary.mean - self.published if self.published is not None else math.nan

    @property
    def delta_baseline(self) -> float:
        return self.summary.mean - self.baseline_mean if self.baseline_mean is not None else math.nan


@dataclass
class Table:
    spec: TableSpec
    row_keys: list[Key]
    col_keys: list[Key]
    cells: dict[tuple[Key, Key, str], Cell]
    extras: dict[tuple[Key, str], float]  # (row, extra header) -> scaled value
    published_extras: dict[tuple[Key, str], float]
    runs_used: int
    runs_skipped: int
    # (row, extra header) -> (column, value) for each column, where the columns' values differ (ResNet-18 has
    # 11.17 M params on CIFAR-10, 11.22 M on CIFAR-100: the classifier differs)
    extras_by_column: dict[tuple[Key, str], list[tuple[Key, float]]] = field(default_factory=dict)
    # FINISHED runs left out because their trial folders do not bear the finish out (orchestrator.run.state)
    runs_inconsistent: int = 0

    @property
    def missing(self) -> int:
        return sum(1 for c in self.cells.values() if c.summary.n == 0)
