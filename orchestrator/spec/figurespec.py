"""The pictures' schema: the `figure:` section of a sweep file and `analysis: {shapes: ...}`.

Kept apart from ``orchestrator.spec.schema`` (as ``orchestrator.spec.tablespec`` is) so the pictures can grow without
touching the sweep schema. A figure is a view of the sweep's table: its data are the table's cells (one
value per seed, the published number where the reference has one), so ``x``, ``series`` and ``panels`` name
the table's row/column params and ``metric`` one of its metric headers (``figure_problems``, which
``convsweep validate`` and ``convsweep figure`` report).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrator.spec.errors import Problem
from orchestrator.spec.tablespec import TableSpec

__all__ = ["FIGURE_FORMATS", "FigureSpec", "ShapesSpec", "TickSpec", "figure_problems"]

FIGURE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _as_list(value: Any) -> Any:
    # `x: layer.sigma_init` is shorthand for `x: [layer.sigma_init]`
    return [value] if isinstance(value, str) else value


class TickSpec(_Frozen):
    """The label of the x positions whose params equal ``when`` (the first matching entry wins).

    ``label`` may name params in braces, ``"{layer.sa}{layer.skp}{layer.sl}"`` -> ``221`` (CoC Fig. 7).
    """

    when: dict[str, Any] = {}
    label: str


class FigureSpec(_Frozen):
    """How ``convsweep figure`` draws the sweep's table.

    ``line``: one line per series over ``x`` (a numeric ``x`` param is placed at its values, anything else
    at evenly spaced ticks); ``bar``: grouped bars, one group per x position; ``heatmap``: the series'
    means as rows against the x positions. Error bars are the cells' spread over seeds (``std``, ``sem``)
    and the published values are drawn as markers where the table's reference has them. ``baseline``: the
    table baseline's cells are drawn as a horizontal band (mean ± error) in each panel instead of a series
    (GMConv Fig. 6's "None").
    """

    kind: Literal["line", "bar", "heatmap"] = "bar"
    x: list[str] = []  # default: the table's rows
    series: list[str] = []  # default: the table's layout params not in x or panels
    panels: list[str] = []  # one subplot per value combination
    metric: str | None = None  # a table metric header; default: the first metric
    error: Literal["std", "sem", "none"] = "std"
    baseline: bool = False
    ticks: list[TickSpec] = []
    labels: dict[str, dict[Any, str]] = {}  # param -> {value: label}, over the table's labels
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    formats: list[Literal["png", "svg", "pdf"]] = Field(default_factory=lambda: list(FIGURE_FORMATS),
                                                        min_length=1)
    columns: Annotated[int, Field(ge=1, le=8)] = 3  # panels per row of the page

    @field_validator("x", "series", "panels", mode="before")
    @classmethod
    def _param_lists(cls, value: Any) -> Any:
        return _as_list(value)


class ShapesSpec(_Frozen):
    """The learned shapes drawn from the model (``orchestrator.train.shapes``): at the end of the trial, and every
    ``every`` epochs when set. ``images``: validation images over which the dynamic GMConv sigmas are
    collected; ``coc_layer``: the CoC layer whose effective kernels are drawn beside its basic ones (default:
    the first CoC layer); ``filters``: how many filters (kernels, envelopes) of a layer are drawn at most."""

    every: Annotated[int, Field(ge=1)] | None = None
    images: Annotated[int, Field(ge=1)] = 256
    coc_layer: str | None = None
    filters: Annotated[int, Field(ge=1, le=256)] = 16


def figure_problems(figure: FigureSpec | None, table: TableSpec | None) -> list[Problem]:
    """What is wrong with a ``figure:`` section against its table (a figure draws the table's cells), as the
    one-line problems ``convsweep validate`` and ``convsweep figure`` report."""
    if figure is None:
        return []
    if table is None:
        return [Problem("figure", "draws the sweep's table, and the sweep has no table section",
                        allowed="a table: section beside figure:")]
    layout = [*table.rows, *table.columns]
    allowed = ", ".join(layout)
    problems = [Problem(f"figure.{key}[{i}]", "not a row or column param of the table", p, allowed)
                for key in ("x", "series", "panels") for i, p in enumerate(getattr(figure, key)) if p not in layout]
    problems += [Problem(f"figure.ticks[{i}].when", "not a row or column param of the table", p, allowed)
                 for i, tick in enumerate(figure.ticks) for p in tick.when if p not in layout]
    headers = [m.header for m in table.metrics]
    if figure.metric is not None and figure.metric not in headers:
        problems.append(Problem("figure.metric", "not a metric header of the table", figure.metric,
                                ", ".join(headers)))
    if figure.baseline and not table.baseline:
        problems.append(Problem("figure.baseline", "draws the table's baseline, and the table has none", True,
                                "false, or set table.baseline"))
    return problems
