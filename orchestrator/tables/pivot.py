"""Runs pivoted into a table's cells: ``build_table`` groups runs by their row and column params, reduces each
run's metric (``best``/``final``/``min`` from the logged summaries, the history otherwise), and fills each cell
with the values, their summary, the expected count, the published number and the comparison with the
baseline row (the delta and, for tables with repeats, a two-sided t-test). A run of another sweep or a run
that is not FINISHED never enters a cell, even when handed in. Runs are worked on as columns
(``orchestrator.track.query.RunColumns``: a dict per key, cells as lists of run ids), so 100,000 runs cost a
pass over a few columns rather than an object each.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from orchestrator.spec.tablespec import MetricSpec, TableSpec
from orchestrator.tables.reference import load_reference, published, published_extra
from orchestrator.tables.stats import summarize, t_test
from orchestrator.tables.table import Cell, Key, Table, canon
from orchestrator.track.query import RunColumns, records_from_runs

__all__ = ["build_table"]

log = logging.getLogger(__name__)


def _metric_values(run_ids: Sequence[str], metric: MetricSpec, runs: RunColumns, client: Any) -> list[float]:
    """Each run's value of ``metric`` (in the runs' order), the runs that never logged it left out."""
    if metric.reduce == "at_best":
        return [v for v in (_value_at_best(rid, metric, runs, client) for rid in run_ids) if v is not None]
    summary = runs.metrics.get(f"{metric.reduce}_{metric.name}", {})
    values = [summary[rid] for rid in run_ids if rid in summary]
    if len(values) == len(run_ids):  # every run logged its summary (what the trainer does)
        return values
    values = []
    for rid in run_ids:
        value = summary[rid] if rid in summary else _raw_value(rid, metric, runs, client)
        if value is not None:
            values.append(value)
    return values


def _raw_value(run_id: str, metric: MetricSpec, runs: RunColumns, client: Any) -> float | None:
    """A run's ``metric`` without its summary: the latest value (``final``) or the history's best/min."""
    name = metric.name
    latest = runs.metrics.get(name, {})
    if metric.reduce == "final" or run_id not in latest:
        return latest.get(run_id)
    if client is None:
        summary_name = f"{metric.reduce}_{name}"
        raise ValueError(f"metric {name!r}: reduce {metric.reduce!r} needs the summary metric {summary_name!r} "
                         f"or an MLflow client for the history (got client=None)")
    history = [m.value for m in client.get_metric_history(run_id, name)]
    if not history:
        return None
    return max(history) if metric.reduce == "best" else min(history)


def _value_at_best(run_id: str, metric: MetricSpec, runs: RunColumns, client: Any) -> float | None:
    """``metric.name`` at the first epoch where ``metric.of`` is highest; None when either was never logged."""
    name, of = metric.name, metric.of
    assert of is not None  # MetricSpec pairs `of` with at_best
    if run_id not in runs.metrics.get(name, {}) or run_id not in runs.metrics.get(of, {}):
        return None
    if client is None:
        raise ValueError(f"metric {name!r}: reduce 'at_best' reads the per-epoch histories of {name!r} and {of!r}, "
                         f"which needs an MLflow client (got client=None)")
    # step = epoch (orchestrator.track.tracker); an epoch logged twice keeps its later value
    ofs = {int(m.step): float(m.value) for m in client.get_metric_history(run_id, of)
           if not math.isnan(m.value)}
    if not ofs:
        return None
    best_epoch = max(ofs, key=lambda step: (ofs[step], -step))
    values = {int(m.step): float(m.value) for m in client.get_metric_history(run_id, name)}
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


def _as_columns(runs: RunColumns | Iterable[Any], sweep: str | None) -> tuple[RunColumns, int]:
    """The runs that may enter a cell, and how many handed in may not (not FINISHED, or another sweep's)."""
    if isinstance(runs, RunColumns):  # FINISHED runs of one sweep by construction
        if sweep is not None and runs.sweep != sweep:
            return RunColumns(sweep, [], {}, {}), len(runs.run_ids)
        return runs, 0
    records = records_from_runs(runs)
    kept = [r for r in records if r.status == "FINISHED" and (sweep is None or r.sweep == sweep)]
    return RunColumns.from_records(sweep or "", kept), len(records) - len(kept)


def _grouped(runs: RunColumns, layout: Sequence[str], n_rows: int) -> tuple[dict[tuple[Key, Key], list[str]], int]:
    """(row, column) -> the ids of its runs, and how many runs lack a layout param: one pass over columns of
    values, no object per run (a table over 100,000 runs)."""
    columns = [[col.get(rid) for rid in runs.run_ids] for col in (runs.params.get(k, {}) for k in layout)]
    by_values: dict[tuple[Any, ...], list[str]] = {}
    lacking = 0
    for rid, values in zip(runs.run_ids, zip(*columns) if columns else repeat((), len(runs.run_ids))):
        if None in values:
            lacking += 1
        else:
            by_values.setdefault(values, []).append(rid)
    grouped: dict[tuple[Key, Key], list[str]] = {}
    for values, run_ids in by_values.items():  # a handful of cells: spell each value as a string once
        key = tuple(map(str, values))
        grouped.setdefault((key[:n_rows], key[n_rows:]), []).extend(run_ids)
    return grouped, lacking


def _expected_counts(expected: Iterable[Mapping[str, Any]], layout: Sequence[str],
                     n_rows: int) -> dict[tuple[Key, Key], int]:
    """(row, column) -> how many planned trials it holds (a planned layout repeats once per seed)."""
    counts: dict[tuple[Key, Key], int] = {}
    if not layout:
        return counts
    getter = itemgetter(*layout)
    for values, n in Counter(map(getter, expected)).items():
        key = tuple(map(str, values if len(layout) > 1 else (values,)))
        counts[(key[:n_rows], key[n_rows:])] = counts.get((key[:n_rows], key[n_rows:]), 0) + n
    return counts


def build_table(spec: TableSpec, runs: RunColumns | Iterable[Any], *, sweep: str | None = None,
                expected: Iterable[Mapping[str, str]] | None = None, reference_dir: str | Path | None = None,
                client: Any = None) -> Table:
    """Aggregate ``runs`` (``RunColumns``, or MLflow ``Run``s or ``RunRecord``s) into ``spec``'s layout.

    ``expected``: the flat params of the sweep's planned trials; their rows/columns appear even when no run
    finished (shown as missing with the expected count). ``sweep``: runs tagged with another sweep are
    dropped. ``client``: only needed for metrics without a logged summary (history lookups, slow).
    """
    layout = [*spec.rows, *spec.columns]
    counts = _expected_counts(expected or [], layout, len(spec.rows))
    runs, skipped = _as_columns(runs, sweep)
    grouped, lacking = _grouped(runs, layout, len(spec.rows))
    skipped += lacking
    used = len(runs.run_ids) - lacking
    if skipped:
        log.info("table: %d runs left out (not FINISHED, another sweep, or without the params %s)", skipped, layout)

    row_keys = _ordered([k[0] for k in grouped], [k[0] for k in counts], spec.rows, spec.labels)
    col_keys = _ordered([k[1] for k in grouped], [k[1] for k in counts], spec.columns, spec.labels)
    ref_rows = load_reference(spec, reference_dir)

    cells: dict[tuple[Key, Key, str], Cell] = {}
    for r in row_keys:
        for c in col_keys:
            if (r, c) not in grouped and (r, c) not in counts and counts:
                continue  # a combination the sweep never planned (e.g. excluded): no cell
            run_ids = grouped.get((r, c), [])
            values = dict(zip(layout, (*r, *c)))
            for metric in spec.metrics:
                vals = _metric_values(run_ids, metric, runs, client)
                cells[(r, c, metric.header)] = Cell(
                    values=vals, summary=summarize(vals), expected_n=counts.get((r, c)),
                    published=published(spec, ref_rows, values, metric.header, layout),
                    published_extra=published_extra(spec, ref_rows, values, metric.header, layout))
    _compare_with_baseline(spec, cells, row_keys, col_keys)

    extras: dict[tuple[Key, str], float] = {}
    published_extras: dict[tuple[Key, str], float] = {}
    by_column: dict[tuple[Key, str], list[tuple[Key, float]]] = {}
    for r in row_keys:
        values = dict(zip(spec.rows, r))
        for extra in spec.extra_metrics:
            logged = runs.metrics.get(extra.name, {})
            # one figure per row, as the papers print it (the first column that has runs, e.g. CIFAR-10),
            # unless the columns' figures differ at the printed precision: then each column's
            per_column = []
            for c in col_keys:
                got = [logged[rid] for rid in grouped.get((r, c), []) if rid in logged]
                if got:
                    per_column.append((c, sum(got) / len(got) * extra.scale))
            if per_column:
                extras[(r, extra.header)] = per_column[0][1]
                if len({round(v, extra.digits) for _, v in per_column}) > 1:
                    by_column[(r, extra.header)] = per_column
            pub = published(spec, ref_rows, values, extra.header, spec.rows)
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

