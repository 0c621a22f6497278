"""The `table:` section of a sweep file: how a sweep's FINISHED runs are laid out as a paper's table.

Kept apart from ``orchestrator.config`` so the table layer can grow without touching the sweep schema;
``orchestrator.tables`` turns a ``TableSpec`` plus MLflow runs into the printed table.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MetricSpec", "ReferenceSpec", "TableSpec"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Frozen):
    """One metric column: an MLflow metric reduced over each run's epochs, then aggregated over runs."""

    name: str = "val_top1"
    reduce: Literal["best", "final", "min"] = "best"
    label: str | None = None  # column header; default: the metric name


class ReferenceSpec(_Frozen):
    """Where the published numbers are and how their rows line up with the table's rows."""

    file: str  # CSV, relative to the sweep file's folder
    match: dict[str, str]  # trial param (dotted) -> CSV column holding the same value
    values: dict[str, str] = {}  # table column label -> CSV column with the published value
    value_map: dict[str, dict[str, str]] = {}  # param -> {run value: CSV value} where the spellings differ


class TableSpec(_Frozen):
    rows: list[str] = Field(min_length=1)  # trial params (dotted) that make the rows
    columns: list[str] = []  # trial params whose values spread across columns
    metrics: list[MetricSpec] = Field(default_factory=lambda: [MetricSpec()], min_length=1)
    aggregate: list[Literal["mean", "std", "max", "n"]] = ["mean", "std", "n"]
    extra_metrics: list[str] = []  # run-level figures shown once per row, e.g. folded_params, folded_flops
    reference: ReferenceSpec | None = None
    baseline: dict[str, Any] | None = None  # the row the deltas and t-tests compare against
    test: Literal["none", "welch"] = "none"
