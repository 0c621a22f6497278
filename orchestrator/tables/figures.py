"""The papers' figures from the tracked runs: the plotted series of a sweep's table, as plain numbers.

``figure_data(table, spec)`` is the pure half: from the table's cells (``orchestrator.tables.table``: the runs'
values per seed and the published numbers) it computes every array the picture shows (``orchestrator.tables.figuredata``): per panel, per
series, the x positions, means, error bars (spread over seeds), counts and published values, and the
baseline band. ``orchestrator.tables.figureplots`` hands exactly these arrays to matplotlib, so a test can check
the picture's data against the MLflow records without reading pixels. ``sweep_figure`` is the whole path
for the CLI: the table (the same query as ``convsweep table``), the data, the files.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from orchestrator.spec.errors import ConfigError
from orchestrator.spec.figurespec import FigureSpec, figure_problems
from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.figuredata import Band, FigureData, Panel, Series
from orchestrator.tables.table import Key, Table, canon

__all__ = ["figure_data", "figure_problems", "sweep_figure"]


def _label(param: str, value: str, spec: FigureSpec, table: Table) -> str:
    for labels in (spec.labels.get(param, {}), table.spec.labels.get(param, {})):
        for raw, text in labels.items():
            if canon(raw) == canon(value):
                return text
    return value


def _matches(values: Mapping[str, str], when: Mapping[str, Any]) -> bool:
    return all(p in values and canon(values[p]) == canon(v) for p, v in when.items())


def _tick(values: Mapping[str, str], spec: FigureSpec, table: Table) -> str:
    for tick in spec.ticks:
        if _matches(values, tick.when):
            return re.sub(r"\{([^{}]+)\}", lambda m: values.get(m.group(1), m.group(0)), tick.label)
    return " ".join(t for t in (_label(p, values[p], spec, table) for p in spec.x) if t)


def _resolved(spec: FigureSpec, table: TableSpec) -> FigureSpec:
    """Defaults filled in from the table, after every named param and metric is checked against it."""
    problems = figure_problems(spec, table)
    if problems:
        raise ConfigError(problems)
    x = spec.x or [p for p in table.rows if p not in spec.panels]
    series = spec.series or [p for p in [*table.rows, *table.columns] if p not in x and p not in spec.panels]
    return spec.model_copy(update={"x": x, "series": series, "metric": spec.metric or table.metrics[0].header})


def _spread(values: Sequence[float], how: str) -> float:
    n = len(values)
    if how == "none" or n < 2:
        return 0.0
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))  # sample std, as the table's
    return std if how == "std" else std / math.sqrt(n)


def figure_data(table: Table, spec: FigureSpec | None = None) -> FigureData:
    """Every array of the figure ``spec`` draws of ``table`` (defaults: a bar chart of the table's rows)."""
    spec = _resolved(spec or FigureSpec(), table.spec)
    layout = [*table.spec.rows, *table.spec.columns]
    baseline = table.spec.baseline or {}
    # (panel, series, x) -> cell, in the table's row and column order
    points: dict[Key, dict[Key, dict[Key, Any]]] = {}
    bands: dict[Key, Any] = {}
    x_values: dict[Key, dict[str, str]] = {}
    for (r, c, header), cell in table.cells.items():
        if header != spec.metric:
            continue
        values = dict(zip(layout, (*r, *c)))
        panel = tuple(values[p] for p in spec.panels)
        if spec.baseline and _matches(values, baseline):
            bands[panel] = cell
            continue
        xk = tuple(values[p] for p in spec.x)
        x_values.setdefault(xk, values)
        points.setdefault(panel, {}).setdefault(tuple(values[p] for p in spec.series), {})[xk] = cell
    numeric = (spec.kind == "line" and len(spec.x) == 1
               and all(canon(k[0])[0] == "n" for k in x_values))
    order = sorted(x_values, key=lambda k: canon(k[0])[1]) if numeric else list(x_values)
    position = {k: (float(k[0]) if numeric else float(i)) for i, k in enumerate(order)}
    # panels and series in the table's order of each param's values (CIFAR-10's panels before CIFAR-100's
    # when the panels are [dataset.name, model], though the table's rows vary the model first)
    rank: dict[str, dict[str, int]] = {}
    for r, c, _ in table.cells:
        for p, v in zip(layout, (*r, *c)):
            rank.setdefault(p, {}).setdefault(v, len(rank.get(p, {})))
    by_rank = lambda params: lambda key: [rank[p][v] for p, v in zip(params, key)]  # noqa: E731
    panels = []
    for panel_key in sorted(dict.fromkeys([*points, *bands]), key=by_rank(spec.panels)):
        by_series = dict(sorted(points.get(panel_key, {}).items(), key=lambda kv: by_rank(spec.series)(kv[0])))
        present = [k for k in order if any(k in cells for cells in by_series.values())]
        series = []
        for skey, cells in by_series.items():
            keys = [k for k in present if k in cells]
            label = " ".join(t for t in (_label(p, v, spec, table) for p, v in zip(spec.series, skey)) if t)
            series.append(Series(
                label=label or str(spec.metric), x=[position[k] for k in keys],
                y=[cells[k].summary.mean if cells[k].values else math.nan for k in keys],
                err=[_spread(cells[k].values, spec.error) for k in keys], n=[len(cells[k].values) for k in keys],
                published=[cells[k].published for k in keys]))
        band = None
        if panel_key in bands:
            cell = bands[panel_key]
            values = dict(zip(baseline, (str(v) for v in baseline.values())))
            label = " ".join(_label(p, values[p], spec, table) for p in spec.series if p in values) or "baseline"
            band = Band(label, cell.summary.mean if cell.values else math.nan, _spread(cell.values, spec.error),
                        len(cell.values), cell.published)
        title = ", ".join(_label(p, v, spec, table) for p, v in zip(spec.panels, panel_key))
        panels.append(Panel(title, [position[k] for k in present], [_tick(x_values[k], spec, table) for k in present],
                            series, band))
    xlabel = spec.xlabel or ", ".join(spec.x)
    return FigureData(spec.kind, spec.title or table.spec.title or "", xlabel, spec.ylabel or str(spec.metric),
                      panels, spec.columns)


def sweep_figure(sweep: Any, out_dir: str | Path, *, sweep_dir: str | Path | None = None,
                 tracking_uri: str | None = None, runs: Sequence[Any] | None = None
                 ) -> tuple[FigureData, list[Path]]:
    """Draw the figure of a ``SweepSpec`` (its ``figure:`` section, or a bar chart of its table) into
    ``out_dir/<sweep>.<format>``; the data come from MLflow as ``convsweep table`` reads them, or from an
    export's ``runs``."""
    from orchestrator.tables.figureplots import save_figure
    from orchestrator.tables.build import sweep_table, sweep_table_from_export

    if sweep.table is None:
        raise ValueError(f"table: sweep {sweep.name!r} has no table section, and a figure draws the table "
                         f"(got table=None; allowed: a table section)")
    spec = sweep.figure or FigureSpec()
    _resolved(spec, sweep.table)  # a bad figure section fails before any run is read
    table = (sweep_table_from_export(sweep, runs, sweep_dir=sweep_dir) if runs is not None
             else sweep_table(sweep, sweep_dir=sweep_dir, tracking_uri=tracking_uri))
    data = figure_data(table, spec)
    return data, save_figure(data, Path(out_dir) / sweep.name, spec.formats)
