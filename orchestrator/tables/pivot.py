"""Runs pivoted into a table's cells: ``build_table`` groups runs by their row and column params, reduces each
run's metric (``best``/``final``/``min`` from the logged summaries, the history otherwise), and fills each cell
with the values, their summary, the expected count, the published number and the comparison with the
baseline row (the delta and, for tables with repeats, a two-sided t-test). A run of another sweep or a run
that is not FINISHED never enters a cell, even when handed in.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from orchestrator.spec.tablespec import MetricSpec, TableSpec
from orchestrator.tables.reference import load_reference, published, published_extra
from orchestrator.tables.stats import summarize, t_test
from orchestrator.tables.table import Cell, Key, Table, canon
from orchestrator.track.query import RunRecord, records_from_runs

__all__ = ["build_table"]

log = logging.getLogger(__name__)


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
    ref_rows = load_reference(spec, reference_dir)

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
                    published=published(spec, ref_rows, values, metric.header, layout),
                    published_extra=published_extra(spec, ref_rows, values, metric.header, layout))
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

