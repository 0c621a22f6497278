"""Reading a sweep's runs back out of MLflow: for the tables (``orchestrator.tables``) and the driver's status.

Two paths, one answer (tests/orchestrator/track/test_query.py checks they give the same columns and table):

- ``fetch_runs``: the public API, ``MlflowClient.search_runs`` filtered on the ``convsweep.sweep`` tag and
  ``status = 'FINISHED'``, 50,000 runs a page (MLflow's maximum) with ``page_token``. Works against any
  tracking URI (a server, a file store, a database) and gives whole ``mlflow.entities.Run`` objects.
- ``fetch_columns`` on a SQLite store (the embedded default): search_runs materialises every param, tag
  and metric of every run as ORM objects (~70 per run for a convsweep trial), tens of seconds for 10,000. A
  table needs a handful of them, so this path reads the file itself (``orchestrator.track.sqlitecolumns``):
  one query per needed key, straight into one dict per key, no object per run. An experiment it cannot pin
  down alone (absent, or one per MLflow workspace), a schema it does not recognise and every other URI (a
  tracking server, a file store, another database) go through ``fetch_runs`` instead, filtered down to the
  same columns.

Run metrics are the *latest* values (what ``run.data.metrics`` holds); the trainer's end-of-run summary
metrics (``best_val_top1``, ``final_val_top1``, ...) make per-run history calls unnecessary.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["SWEEP_TAG", "RunColumns", "RunRecord", "fetch_columns", "fetch_runs", "records_from_runs"]

log = logging.getLogger(__name__)

SWEEP_TAG = "convsweep.sweep"
PAGE_SIZE = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD: the fewest round trips the API allows


@dataclass(frozen=True)
class RunRecord:
    """What a table needs of one MLflow run: params as logged (strings) and the latest metric values."""

    run_id: str
    status: str
    sweep: str | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class RunColumns:
    """FINISHED runs of one sweep, column by column: a table over 100,000 runs reads a few values of each,
    and a dict per key holds them without an object per run. A run lacks a key where it never logged it."""

    sweep: str
    run_ids: list[str]  # in the store's order
    # param -> run id -> value as logged; metric -> run id -> latest value. Read by the ids in ``run_ids``:
    # a store's reader may leave other runs' values in (orchestrator.track.sqlitecolumns)
    params: dict[str, dict[str, str]]
    metrics: dict[str, dict[str, float]]

    @classmethod
    def from_records(cls, sweep: str, records: Sequence[RunRecord], params: Iterable[str] | None = None,
                     metrics: Iterable[str] | None = None) -> RunColumns:
        """``records`` (FINISHED runs of ``sweep``) as columns of the named keys; None: every key logged."""
        param_keys = dict.fromkeys(params if params is not None else (k for r in records for k in r.params))
        metric_keys = dict.fromkeys(metrics if metrics is not None else (k for r in records for k in r.metrics))
        return cls(sweep, [r.run_id for r in records],
                   {k: {r.run_id: r.params[k] for r in records if k in r.params} for k in param_keys},
                   {k: {r.run_id: float(r.metrics[k]) for r in records if k in r.metrics} for k in metric_keys})

    def without(self, run_ids: set[str]) -> RunColumns:
        """The same columns without those runs."""
        keep = [r for r in self.run_ids if r not in run_ids]
        return RunColumns(self.sweep, keep, self.params, self.metrics)

    def record(self, run_id: str) -> RunRecord:
        """One run's row (for checks and small tables)."""
        return RunRecord(run_id, "FINISHED", self.sweep,
                         {k: col[run_id] for k, col in self.params.items() if run_id in col},
                         {k: col[run_id] for k, col in self.metrics.items() if run_id in col})


def _check_sweep_name(sweep_name: str) -> None:
    """A sweep name goes into MLflow's filter string between quotes: none of its own."""
    if "'" in sweep_name or "`" in sweep_name:
        raise ValueError(f"sweep_name: quotes are not allowed (got {sweep_name!r})")


def fetch_runs(tracking_uri: str, experiment: str, sweep_name: str, *, finished_only: bool = True) -> list[Any]:
    """Every FINISHED run (or, with ``finished_only=False``, every run) of ``sweep_name`` in ``experiment``
    (``mlflow.entities.Run`` objects), paginated."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    _check_sweep_name(sweep_name)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment: no MLflow experiment named {experiment!r} at {tracking_uri} "
                         f"(got {experiment!r}; has the sweep run yet?)")
    query = f"tags.`{SWEEP_TAG}` = '{sweep_name}'" + (" and attributes.status = 'FINISHED'" * finished_only)
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=query, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=PAGE_SIZE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def records_from_runs(runs: Iterable[Any]) -> list[RunRecord]:
    """``RunRecord``s from ``mlflow.entities.Run`` objects (records pass through unchanged)."""
    out = []
    for run in runs:
        if isinstance(run, RunRecord):
            out.append(run)
        else:
            out.append(RunRecord(run.info.run_id, run.info.status, run.data.tags.get(SWEEP_TAG),
                                 dict(run.data.params), dict(run.data.metrics)))
    return out


def fetch_columns(tracking_uri: str, experiment: str, sweep_name: str, *, params: Sequence[str],
                  metrics: Sequence[str], fallback: Mapping[str, str] | None = None,
                  api_only: bool = False) -> RunColumns:
    """The FINISHED runs of ``sweep_name`` holding only the named ``params`` and ``metrics``.

    ``fallback`` maps a summary metric to the raw metric read instead for the runs that lack the summary
    (``best_val_top1 -> val_top1``); those runs alone hold the raw metric. A SQLite store is read directly
    unless ``api_only`` (the module doc); any other goes through ``fetch_runs``.
    """
    from orchestrator.track.store import sqlite_path

    _check_sweep_name(sweep_name)
    path = None if api_only else sqlite_path(tracking_uri)
    if path is not None:
        from orchestrator.track.sqlitecolumns import read_columns, read_metric

        got = read_columns(path, experiment, SWEEP_TAG, sweep_name, params, metrics)
        if got is not None:
            return _with_fallback(RunColumns(sweep_name, *got), fallback or {}, lambda key, _: read_metric(path, key))
    records = {r.run_id: r for r in records_from_runs(fetch_runs(tracking_uri, experiment, sweep_name))
               if r.status == "FINISHED" and r.sweep == sweep_name}
    return _with_fallback(RunColumns.from_records(sweep_name, list(records.values()), params, metrics), fallback or {},
                          lambda key, lacking: {rid: float(records[rid].metrics[key]) for rid in lacking
                                                if key in records[rid].metrics})


def _with_fallback(columns: RunColumns, fallback: Mapping[str, str],
                   read: Callable[[str, set[str]], dict[str, float]]) -> RunColumns:
    """``columns`` plus, for each summary metric in ``fallback``, the raw metric of the runs that lack the
    summary (``read(raw, their ids)``, which may answer for more runs): rare, so read only then."""
    for summary, raw in fallback.items():
        have = columns.metrics.get(summary, {})
        lacking = {rid for rid in columns.run_ids if rid not in have}
        if lacking and raw not in columns.metrics:
            got = read(raw, lacking)
            if got:
                columns.metrics[raw] = got
    return columns
