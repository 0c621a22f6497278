"""The columns a table needs, read straight from a SQLite MLflow store (``fetch_columns``' fast path).

MLflow's tracking tables (``mlflow/store/tracking/dbmodels/models.py``): ``experiments``, ``runs``, and
``tags``, ``params``, ``latest_metrics`` with one row per (key, run) and a primary-key index on
``(key, run_uuid)``. Reading one key's rows through that index visits the table in run-id order, a random
walk over a file of gigabytes (0.9 s of CPU for three metrics of 100,000 runs here); taking the index's row
ids first and reading the rows in row-id order (``_ONE_KEY``) walks the file forwards (0.45 s). The database is opened
read-only. (Memory-mapping it saved no time here and grew the process by the pages it touched, 1.5 GB.)

Each key is one query whose rows go into one dict, the runs' ids are two (the experiment's FINISHED runs,
the sweep's tag); no MLflow import, no ORM, no object per run. The table and column names have not changed
across MLflow's schema migrations; should they ever, the query fails, this says so in the log and the
caller asks MLflow's API instead.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Sequence

__all__ = ["open_readonly", "read_columns", "read_metric", "read_tagged_runs"]

Columns = tuple[list[str], dict[str, dict[str, str]], dict[str, dict[str, float]]]

log = logging.getLogger(__name__)

# the rows of one key in row-id order (the IN list is an index SQLite walks in order): see the module doc
_ONE_KEY = "SELECT run_uuid, {columns} FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE key = ?)"


def read_columns(path: Path, experiment: str, sweep_tag: str, sweep_name: str, params: Sequence[str],
                 metrics: Sequence[str]) -> Columns | None:
    """The FINISHED runs of ``experiment`` whose tag ``sweep_tag`` is ``sweep_name``, in the store file ``path``:
    their ids, then param -> run id -> value and metric -> run id -> latest value. None when the experiment is
    not one active experiment of that name or the file is not a store this understands."""
    try:
        with open_readonly(path) as db:
            exps = db.execute("SELECT experiment_id FROM experiments WHERE name = ? AND lifecycle_stage = 'active'",
                              (experiment,)).fetchall()
            if len(exps) != 1:
                return None  # absent, or one per MLflow workspace: the API knows which
            in_sweep = {rid for rid, value in db.execute(_ONE_KEY.format(columns="value", table="tags"), (sweep_tag,))
                        if value == sweep_name}
            # the runs before their values: a run is FINISHED after its summaries are logged, so one that
            # finishes meanwhile is left out or read whole
            finished = db.execute("SELECT run_uuid FROM runs WHERE experiment_id = ? AND lifecycle_stage = 'active' "
                                  "AND status = 'FINISHED'", exps[0]).fetchall()
            # every run of the store that logged a key is in its dict: filtering 100,000 entries costs more
            # than the lookups by run id it would spare
            return ([rid for (rid,) in finished if rid in in_sweep],
                    {key: _param(db, key) for key in dict.fromkeys(params)},
                    {key: _metric(db, key) for key in dict.fromkeys(metrics)})
    except sqlite3.Error as exc:
        log.warning("reading %s directly failed (%s); using MlflowClient.search_runs", path, exc)
        return None


def read_metric(path: Path, key: str) -> dict[str, float]:
    """Run id -> latest value of metric ``key``, for every run of the store that logged it."""
    with open_readonly(path) as db:
        return _metric(db, key)


def open_readonly(path: Path) -> closing[sqlite3.Connection]:
    return closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True))


def _param(db: sqlite3.Connection, key: str) -> dict[str, str]:
    return dict(db.execute(_ONE_KEY.format(columns="value", table="params"), (key,)))


def _metric(db: sqlite3.Connection, key: str) -> dict[str, float]:
    # MLflow keeps a NaN as value 0 with is_nan set; SQLite has no NaN, so it comes as NULL (rare: mend then)
    got = dict(db.execute(_ONE_KEY.format(columns="CASE WHEN is_nan THEN NULL ELSE value END", table="latest_metrics"),
                          (key,)))
    return {rid: math.nan if value is None else value for rid, value in got.items()} if None in got.values() else got


def read_tagged_runs(path: Path, tags: Sequence[str]) -> list[tuple[str, str, str, dict[str, str]]] | None:
    """(run id, experiment id, status, {tag: value} of ``tags`` it has) of every active run of an active
    experiment in the store file ``path``, oldest first; None when the file is not a store this understands."""
    try:
        with open_readonly(path) as db:
            runs = db.execute("SELECT r.run_uuid, r.experiment_id, r.status FROM runs r JOIN experiments e "
                              "ON r.experiment_id = e.experiment_id WHERE r.lifecycle_stage = 'active' AND "
                              "e.lifecycle_stage = 'active' ORDER BY r.start_time, r.run_uuid").fetchall()
            values = {key: dict(db.execute(_ONE_KEY.format(columns="value", table="tags"), (key,)))
                      for key in dict.fromkeys(tags)}
    except sqlite3.Error as exc:
        log.warning("reading %s directly failed (%s); using MlflowClient.search_runs", path, exc)
        return None
    return [(rid, str(exp), status, {k: v[rid] for k, v in values.items() if rid in v}) for rid, exp, status in runs]
