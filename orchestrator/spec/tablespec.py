"""The `table:` section of a sweep file: how a sweep's FINISHED runs are laid out as a paper's table.

Kept apart from ``orchestrator.spec.schema`` so the table layer can grow without touching the sweep schema;
``orchestrator.tables.build`` turns a ``TableSpec`` plus MLflow runs into the printed table.

Layout: ``rows`` and ``columns`` name trial params (dotted, as ``TrialSpec.flat_params`` logs them); every
(row, column, metric) triple is one cell aggregated over the runs that share those values (the seeds).
``baseline`` names the values that turn any row into its comparison row: ``{layer.method: stdconv}`` compares
each GMConv row with the StdConv row of the same model (GMConv Table 1, ACONV Tables 2-3).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ExtraMetricSpec", "MarksSpec", "MetricSpec", "ReferenceSpec", "TableSpec"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Frozen):
    """One metric column: an MLflow metric reduced over each run's epochs, then aggregated over runs.

    ``best`` uses the run's logged ``best_<name>`` summary metric when there is one (the trainer logs
    ``best_val_top1``), ``final`` the ``final_<name>`` summary or else the latest logged value; anything else
    falls back to the run's metric history. ``at_best`` reads the metric at the epoch where the metric ``of``
    is highest (the first such epoch, as the trainer picks its best epoch), from both per-epoch histories
    (step = epoch): the top-5 of the epoch whose top-1 a table reports as best (GMConv Table 2).
    """

    name: str = "val_top1"
    reduce: Literal["best", "final", "min", "at_best"] = "best"
    of: str | None = None  # at_best: the metric whose best epoch is read
    label: str | None = None  # column header; default: the metric name

    @property
    def header(self) -> str:
        return self.label or self.name

    @model_validator(mode="after")
    def _of_goes_with_at_best(self) -> MetricSpec:
        if (self.reduce == "at_best") != (self.of is not None):
            raise ValueError(f"table.metrics: `of` names the metric whose best epoch `reduce: at_best` reads, and "
                             f"goes with it alone (got reduce={self.reduce!r}, of={self.of!r})")
        return self


class ExtraMetricSpec(_Frozen):
    """A run-level figure shown once per row, e.g. the folded model's params (GMConv Tables 1-2)."""

    name: str  # metric logged at the end of the run: folded_params, folded_flops
    scale: float = 1.0  # printed value = logged value * scale (1e-6 for "Params (M)")
    label: str | None = None
    digits: int = Field(default=2, ge=0, le=8)

    @property
    def header(self) -> str:
        return self.label or self.name

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        # `extra_metrics: [folded_params]` is shorthand for `[{name: folded_params}]`
        return {"name": data} if isinstance(data, str) else data


class ReferenceSpec(_Frozen):
    """Where the published numbers are and how their rows line up with the table's cells."""

    file: str  # CSV, relative to the sweep file's folder
    match: dict[str, str]  # trial param (dotted, a row or column param) -> CSV column holding the same value
    values: dict[str, str] = {}  # metric/extra header -> CSV column with the published value
    value_map: dict[str, dict[str, str]] = {}  # param -> {run value: CSV value} where the spellings differ
    # more published columns printed as given beside each published metric value, label -> CSV column:
    # ACONV's std, max, t and p, CoC's ± over its seeds, GMConv Table 3's number of sigmas
    extra: dict[str, str] = {}


class MarksSpec(_Frozen):
    """The marks the papers print, applied to our numbers (md, latex and html; csv stays plain)."""

    best: bool = False  # bold the best mean of each column and metric (higher is better)...
    best_within: list[str] = []  # ...among the rows that share these row params (e.g. [model]: per backbone)
    significance: Annotated[float, Field(gt=0, lt=1)] | None = None  # asterisk on p-values below this


class TableSpec(_Frozen):
    title: str | None = None
    rows: list[str] = Field(min_length=1)  # trial params (dotted) that make the rows
    columns: list[str] = []  # trial params whose values spread across columns
    metrics: list[MetricSpec] = Field(default_factory=lambda: [MetricSpec()], min_length=1)
    aggregate: list[Literal["mean", "std", "max", "n"]] = ["mean", "std", "n"]
    extra_metrics: list[ExtraMetricSpec] = []
    reference: ReferenceSpec | None = None
    baseline: dict[str, Any] | None = None  # row/column values that turn a cell into its comparison cell
    # two-sided t-test of each cell against its baseline: Welch's (unequal variances) or Student's pooled one
    # (the ACONV paper's, see orchestrator.tables.stats)
    test: Literal["none", "welch", "student"] = "none"
    labels: dict[str, dict[Any, str]] = {}  # param -> {value: printed label}, e.g. resnet20 -> ResNet-20; 5 finds "5.0"
    digits: int = Field(default=2, ge=0, le=8)
    marks: MarksSpec = MarksSpec()

    @model_validator(mode="after")
    def _keys_are_layout_params(self) -> TableSpec:
        layout = set(self.rows) | set(self.columns)
        if len(layout) != len(self.rows) + len(self.columns):
            raise ValueError(f"table: rows and columns must not repeat a param (got {self.rows} and {self.columns})")
        if "mean" not in self.aggregate:
            raise ValueError(f"table.aggregate: must include 'mean' (got {self.aggregate!r})")
        for key in self.baseline or {}:
            if key not in layout:
                raise ValueError(f"table.baseline: {key!r} is not a row or column param (allowed: {sorted(layout)})")
        if self.reference is not None:
            for key in self.reference.match:
                if key not in layout:
                    raise ValueError(
                        f"table.reference.match: {key!r} is not a row or column param (allowed: {sorted(layout)})"
                    )
            headers = {m.header for m in self.metrics} | {e.header for e in self.extra_metrics}
            for header in self.reference.values:
                if header not in headers:
                    raise ValueError(
                        f"table.reference.values: {header!r} is not a metric or extra metric header "
                        f"(allowed: {sorted(headers)})"
                    )
        unknown = [p for p in self.marks.best_within if p not in self.rows]
        if unknown:
            raise ValueError(f"table.marks.best_within: {unknown} are not row params (allowed: {self.rows})")
        if self.test != "none" and not self.baseline:
            raise ValueError(f"table.test: {self.test!r} needs a table.baseline to test against (got baseline=None)")
        return self
