"""The papers' tables regenerated from MLflow: query a sweep's FINISHED runs, aggregate, render.

``orchestrator.track.query`` reads the runs (``fetch_runs``: ``MlflowClient.search_runs``, paginated;
``fetch_records``: only the params and metrics a table needs, straight from a database store);
``build_table`` pivots runs by their params into the layout of a ``TableSpec`` (rows x columns x metrics),
each cell ``mean ± std (n)`` with the published number beside it (``experiments/reference/*.csv``), the
delta to it, the delta to the baseline row and, for tables with repeats, a two-sided Welch t-test against the
baseline (ACONV Tables 2-3). ``render`` turns a ``Table`` into md, csv, latex or html text
(``orchestrator.tables.render``); printing is the CLI's job. A run of another sweep or a run that is not
FINISHED never enters a cell, even when handed in.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from orchestrator.tables.stats import Summary, summarize, t_test
from orchestrator.track.query import RunRecord, fetch_records, fetch_runs, records_from_runs
from orchestrator.spec.tablespec import MetricSpec, TableSpec

__all__ = [
    "FORMATS", "Cell", "RunRecord", "Table", "build_table", "expected_layout", "fetch_records", "fetch_runs",
    "needed_keys", "records_from_runs", "render", "sweep_table", "sweep_table_from_export",
]

log = logging.getLogger(__name__)

FORMATS = ("md", "csv", "latex", "html")  # see orchestrator.tables.render


# ---------------------------------------------------------------------------------------------- values
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


Key = tuple[str, ...]


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


# ---------------------------------------------------------------------------------------------- build
def _metric_value(rec: RunRecord, metric: MetricSpec, client: Any) -> float | None:
    name = metric.name
    if metric.reduce == "at_best":
        return _value_at_best(rec, metric, client)
    summary_name = {"best": f"best_{name}", "final": f"final_{name}", "min": f"min_{name}"}[metric.reduce]
    if summary_name in rec.metrics:
        return float(rec.metrics[summary_name])
    if metric.reduce == "final":
        return float(rec.metrics[name]) if name in rec.metrics else None
    if name not in rec.metrics:
        return None
    if client is None:
        raise ValueError(f"metric {name!r}: reduce {metric.reduce!r} needs the summary metric {summary_name!r} "
                         f"or an MLflow client for the history (got client=None)")
    history = [m.value for m in client.get_metric_history(rec.run_id, name)]
    if not history:
        return None
    return max(history) if metric.reduce == "best" else min(history)


def _value_at_best(rec: RunRecord, metric: MetricSpec, client: Any) -> float | None:
    """``metric.name`` at the first epoch where ``metric.of`` is highest; None when either was never logged."""
    name, of = metric.name, metric.of
    assert of is not None  # MetricSpec pairs `of` with at_best
    if name not in rec.metrics or of not in rec.metrics:
        return None
    if client is None:
        raise ValueError(f"metric {name!r}: reduce 'at_best' reads the per-epoch histories of {name!r} and {of!r}, "
                         f"which needs an MLflow client (got client=None)")
    # step = epoch (orchestrator.track.tracker); an epoch logged twice keeps its later value
    ofs = {int(m.step): float(m.value) for m in client.get_metric_history(rec.run_id, of)
           if not math.isnan(m.value)}
    if not ofs:
        return None
    best_epoch = max(ofs, key=lambda step: (ofs[step], -step))
    values = {int(m.step): float(m.value) for m in client.get_metric_history(rec.run_id, name)}
    return values.get(best_epoch)


def _ordered(keys: Iterable[Key], first: Sequence[Key], params: Sequence[str],
             labels: Mapping[str, Mapping[Any, str]]) -> list[Key]:
    """``first`` in its order, then any other keys: by their order in ``labels``, then by value."""
    seen = dict.fromkeys(first)
    rank = {p: {canon(v): i for i, v in enumerate(labels.get(p, {}))} for p in params}

    def sort_key(key: Key) -> list[tuple[int, str, Any]]:
        out = []
        for p, (tag, v) in zip(params, map(canon, key)):
            out.append((rank[p].get((tag, v), len(rank[p])), tag, v if tag in ("n", "b") else str(v)))
        return out

    return list(seen) + sorted({k for k in keys if k not in seen}, key=sort_key)


def _load_reference(spec: TableSpec, reference_dir: str | Path | None) -> list[dict[str, str]]:
    if spec.reference is None:
        return []
    path = Path(reference_dir or ".") / spec.reference.file
    if not path.is_file():
        raise ValueError(f"table.reference.file: no such CSV {str(path)!r} (got {spec.reference.file!r})")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = ({*spec.reference.match.values(), *spec.reference.values.values(), *spec.reference.extra.values()}
               - set(rows[0] if rows else {}))
    if missing:
        raise ValueError(f"table.reference: {path.name} lacks columns {sorted(missing)} "
                         f"(got columns {sorted(rows[0]) if rows else []})")
    return rows


def _reference_row(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str],
                   params: Sequence[str]) -> dict[str, str] | None:
    """The published CSV row whose ``reference.match`` columns equal these param values, if any."""
    ref = spec.reference
    assert ref is not None
    for row in ref_rows:
        if all(canon(ref.value_map.get(p, {}).get(values[p], values[p])) == canon(row[ref.match[p]])
               for p in params if p in ref.match):
            return row
    return None


def _published(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str], header: str,
               params: Sequence[str]) -> float | None:
    ref = spec.reference
    if ref is None or header not in ref.values:
        return None
    row = _reference_row(spec, ref_rows, values, params)
    text = "" if row is None else row[ref.values[header]].strip()
    return float(text) if text else None


def _published_extra(spec: TableSpec, ref_rows: list[dict[str, str]], values: Mapping[str, str], header: str,
                     params: Sequence[str]) -> dict[str, str]:
    """The ``reference.extra`` columns of the CSV row that holds ``header``'s published value, as printed."""
    ref = spec.reference
    if ref is None or not ref.extra or header not in ref.values:
        return {}
    row = _reference_row(spec, ref_rows, values, params)
    if row is None or not row[ref.values[header]].strip():
        return {}
    return {label: row[column].strip() for label, column in ref.extra.items()}


def build_table(spec: TableSpec, runs: Iterable[Any], *, sweep: str | None = None,
                expected: Iterable[Mapping[str, str]] | None = None, reference_dir: str | Path | None = None,
                client: Any = None) -> Table:
    """Aggregate ``runs`` (MLflow ``Run``s or ``RunRecord``s) into ``spec``'s layout.

    ``expected``: the flat params of the sweep's planned trials; their rows/columns appear even when no run
    finished (shown as missing with the expected count). ``sweep``: runs tagged with another sweep are
    dropped. ``client``: only needed for metrics without a logged summary (history lookups, slow).
    """
    layout = [*spec.rows, *spec.columns]
    rows_of = lambda p: tuple(str(p[k]) for k in spec.rows)  # noqa: E731
    cols_of = lambda p: tuple(str(p[k]) for k in spec.columns)  # noqa: E731
    expected = list(expected or [])
    counts: dict[tuple[Key, Key], int] = {}
    for params in expected:
        key = (rows_of(params), cols_of(params))
        counts[key] = counts.get(key, 0) + 1

    grouped: dict[tuple[Key, Key], list[RunRecord]] = {}
    used = skipped = 0
    for rec in records_from_runs(runs):
        if (rec.status != "FINISHED" or (sweep is not None and rec.sweep != sweep)
                or any(k not in rec.params for k in layout)):
            skipped += 1
            continue
        grouped.setdefault((rows_of(rec.params), cols_of(rec.params)), []).append(rec)
        used += 1
    if skipped:
        log.info("table: %d runs left out (not FINISHED, another sweep, or without the params %s)", skipped, layout)

    row_keys = _ordered([k[0] for k in grouped], [k[0] for k in counts], spec.rows, spec.labels)
    col_keys = _ordered([k[1] for k in grouped], [k[1] for k in counts], spec.columns, spec.labels)
    ref_rows = _load_reference(spec, reference_dir)

    cells: dict[tuple[Key, Key, str], Cell] = {}
    for r in row_keys:
        for c in col_keys:
            if (r, c) not in grouped and (r, c) not in counts and counts:
                continue  # a combination the sweep never planned (e.g. excluded): no cell
            recs = grouped.get((r, c), [])
            values = dict(zip(layout, (*r, *c)))
            for metric in spec.metrics:
                vals = [v for v in (_metric_value(rec, metric, client) for rec in recs) if v is not None]
                cells[(r, c, metric.header)] = Cell(
                    values=vals, summary=summarize(vals), expected_n=counts.get((r, c)),
                    published=_published(spec, ref_rows, values, metric.header, layout),
                    published_extra=_published_extra(spec, ref_rows, values, metric.header, layout))
    _compare_with_baseline(spec, cells, row_keys, col_keys)

    extras: dict[tuple[Key, str], float] = {}
    published_extras: dict[tuple[Key, str], float] = {}
    by_column: dict[tuple[Key, str], list[tuple[Key, float]]] = {}
    for r in row_keys:
        values = dict(zip(spec.rows, r))
        for extra in spec.extra_metrics:
            # one figure per row, as the papers print it (the first column that has runs, e.g. CIFAR-10),
            # unless the columns' figures differ at the printed precision: then each column's
            per_column = []
            for c in col_keys:
                got = [float(rec.metrics[extra.name]) for rec in grouped.get((r, c), []) if extra.name in rec.metrics]
                if got:
                    per_column.append((c, sum(got) / len(got) * extra.scale))
            if per_column:
                extras[(r, extra.header)] = per_column[0][1]
                if len({round(v, extra.digits) for _, v in per_column}) > 1:
                    by_column[(r, extra.header)] = per_column
            pub = _published(spec, ref_rows, values, extra.header, spec.rows)
            if pub is not None:
                published_extras[(r, extra.header)] = pub
    return Table(spec, row_keys, col_keys, cells, extras, published_extras, used, skipped, by_column)


def _compare_with_baseline(spec: TableSpec, cells: dict[tuple[Key, Key, str], Cell], row_keys: list[Key],
                           col_keys: list[Key]) -> None:
    if not spec.baseline:
        return
    wanted = {k: canon(v) for k, v in spec.baseline.items()}

    def swap(key: Key, names: list[str], pool: list[Key]) -> Key | None:
        target = [wanted.get(n, canon(v)) for n, v in zip(names, key)]
        return next((k for k in pool if [canon(v) for v in k] == target), None)

    for (r, c, header), cell in cells.items():
        br, bc = swap(r, spec.rows, row_keys), swap(c, spec.columns, col_keys)
        base = cells.get((br, bc, header)) if br is not None and bc is not None else None
        if base is None or base.summary.n == 0:
            continue
        cell.is_baseline = base is cell
        if cell.is_baseline or cell.summary.n == 0:
            continue
        cell.baseline_mean = base.summary.mean
        if spec.test != "none":
            cell.t, cell.p = t_test(cell.values, base.values, spec.test)


def render(table: Table, fmt: str = "md") -> str:
    """The table as text in ``fmt`` (one of ``FORMATS``); the formats live in ``orchestrator.tables.render``."""
    from orchestrator.tables.render import render_table

    return render_table(table, fmt)


def needed_keys(spec: TableSpec) -> tuple[list[str], list[str], dict[str, str]]:
    """What ``build_table`` reads for ``spec``: params, metrics, and {summary metric: raw metric} fallbacks."""
    fallback = {f"{m.reduce}_{m.name}": m.name for m in spec.metrics if m.reduce != "at_best"}
    # at_best reads histories; the latest values only tell which runs logged both metrics at all
    raw = [key for m in spec.metrics if m.reduce == "at_best" for key in (m.name, str(m.of))]
    return [*spec.rows, *spec.columns], [*fallback, *raw, *(e.name for e in spec.extra_metrics)], fallback


def expected_layout(sweep: Any) -> list[dict[str, str]]:
    """The row/column params of each planned trial, as ``flat_params`` spells them.

    Seeds vary innermost and never change a trial's layout params, so unless the layout or an ``exclude``
    entry names the seed, one seed is expanded and repeated (a 10,000-trial sweep of 9 configurations
    expands 9 trials, not 10,000). An evaluation sweep's trials are the source sweep's finished trials found
    under the storage root: none when that folder is not on this machine.
    """
    from orchestrator.spec.expand import expand

    keys = [*sweep.table.rows, *sweep.table.columns]
    per_seed = (sweep.evaluate is None and "seed" not in keys
                and not any("seed" in entry for entry in sweep.exclude))
    trials = expand(sweep.model_copy(update={"seeds": sweep.seeds[:1]}) if per_seed else sweep)
    layout = [{k: _flat_param(t, k) for k in keys} for t in trials]
    return layout * len(sweep.seeds) if per_seed else layout


def _flat_param(trial: Any, key: str) -> str:
    """``trial.flat_params()[key]`` without dumping and hashing the whole trial."""
    value: Any = trial
    for part in key.split("."):
        value = getattr(value, part, None)
        if value is None or isinstance(value, dict):
            return trial.flat_params()[key]  # absent here or a computed entry: the slow, exact way
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return trial.flat_params()[key] if hasattr(value, "model_dump") else str(value)


class _LazyClient:
    """An MlflowClient made on first use: only metrics without a logged summary need the history API."""

    def __init__(self, uri: str) -> None:
        self._uri, self._client = uri, None

    def get_metric_history(self, run_id: str, key: str) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self._uri)
        return self._client.get_metric_history(run_id, key)


def sweep_table(sweep: Any, *, sweep_dir: str | Path | None = None, tracking_uri: str | None = None) -> Table:
    """The table of a ``SweepSpec`` from its MLflow store (``tracking_uri`` overrides the sweep's own).

    The planned trials (``expected_layout``) make the layout, so unfinished cells show as missing.
    """
    if sweep.table is None:
        raise ValueError(f"table: sweep {sweep.name!r} has no table section (got table=None)")
    uri = tracking_uri or sweep.tracking.uri
    params, metrics, fallback = needed_keys(sweep.table)
    runs = fetch_records(uri, sweep.experiment, sweep.name, params=params, metrics=metrics, fallback=fallback)
    contradicted = _contradicted_runs(sweep, {r.run_id for r in runs})
    runs = [r for r in runs if r.run_id not in contradicted]
    expected = expected_layout(sweep) or None  # None: the finished runs alone make the layout
    table = build_table(sweep.table, runs, sweep=sweep.name, expected=expected, reference_dir=sweep_dir,
                        client=_LazyClient(uri))
    table.runs_inconsistent = len(contradicted)
    return table


def _contradicted_runs(sweep: Any, run_ids: set[str]) -> set[str]:
    """Those of ``run_ids`` whose trial folder (on this machine) does not bear out a finished trial.

    The cheap checks only (markers, summary, checkpoint sizes against their checksums: a stat or two per
    trial, no hashing), so a table over thousands of runs stays quick; ``convsweep status`` checks the bytes.
    """
    from orchestrator.dirs.trialdir import TrialDir

    folder = Path(sweep.storage.root) / sweep.name
    if not run_ids or not folder.is_dir():
        return set()
    contradicted = set()
    for trial in folder.iterdir():
        try:
            run_id = (trial / "mlflow_run_id").read_text(encoding="utf-8").strip()
        except OSError:  # not a trial folder (jobs/, tune/, files)
            continue
        if run_id in run_ids and TrialDir(trial).contradiction(trains=sweep.evaluate is None, deep=False):
            contradicted.add(run_id)
    return contradicted


def sweep_table_from_export(sweep: Any, runs: Iterable[Any], *, sweep_dir: str | Path | None = None) -> Table:
    """The table of a ``SweepSpec`` from the runs of a ``convsweep export`` file (``orchestrator.tables.export``).

    The same layout as ``sweep_table``; per-epoch histories come from the file, so no MLflow is involved.
    """
    from orchestrator.tables.export import HistoryFromExport

    if sweep.table is None:
        raise ValueError(f"table: sweep {sweep.name!r} has no table section (got table=None)")
    # the runs MLflow's query would have returned: this sweep's FINISHED ones (the export keeps them all)
    runs = [r for r in runs if r.status == "FINISHED" and r.sweep == sweep.name]
    expected = expected_layout(sweep) or None
    return build_table(sweep.table, [r.record() for r in runs], sweep=sweep.name, expected=expected,
                       reference_dir=sweep_dir, client=HistoryFromExport(runs))
