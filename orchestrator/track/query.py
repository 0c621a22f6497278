"""Reading a sweep's FINISHED runs out of MLflow for ``orchestrator.tables.build``, fast enough for 10,000 runs.

Two paths, same answer (tests/orchestrator/test_tables.py checks they agree):

- ``fetch_runs``: the public API, ``MlflowClient.search_runs`` filtered on the ``convsweep.sweep`` tag and
  ``status = 'FINISHED'``, 50,000 runs a page (MLflow's maximum) with ``page_token``. Works against any
  tracking URI (server, file store, database).
- ``fetch_records`` on a database store (``sqlite:``, ``postgresql:``, ``mysql:``, ``mssql:``): search_runs
  materialises every param, tag and metric of every run as ORM objects (~70 per run for a convsweep trial),
  tens of seconds for 10,000 runs here. A table needs a handful of them, so this path asks the same
  database for only those columns, in three queries over MLflow's tracking tables (``experiments``, ``runs``,
  ``tags``, ``params``, ``latest_metrics``), without importing MLflow. An experiment it cannot pin down
  alone (absent, or one per MLflow workspace) or a schema it does not recognise sends it to ``fetch_runs``;
  any other URI goes there directly.

Run metrics are the *latest* values (what ``run.data.metrics`` holds); the trainer's end-of-run summary
metrics (``best_val_top1``, ``final_val_top1``, ...) make per-run history calls unnecessary.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = ["DB_SCHEMES", "SWEEP_TAG", "RunRecord", "fetch_records", "fetch_runs", "records_from_runs"]

log = logging.getLogger(__name__)

SWEEP_TAG = "convsweep.sweep"
PAGE_SIZE = 50_000  # MLflow's SEARCH_MAX_RESULTS_THRESHOLD: the fewest round trips the API allows
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


@dataclass(frozen=True)
class RunRecord:
    """What a table needs of one MLflow run: params as logged (strings) and the latest metric values."""

    run_id: str
    status: str
    sweep: str | None
    params: Mapping[str, str]
    metrics: Mapping[str, float]


def _check_name(sweep_name: str) -> None:
    if "'" in sweep_name or "`" in sweep_name:
        raise ValueError(f"sweep_name: quotes are not allowed (got {sweep_name!r})")


def _experiment_id(client: Any, tracking_uri: str, experiment: str) -> str:
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment: no MLflow experiment named {experiment!r} at {tracking_uri} "
                         f"(got {experiment!r}; has the sweep run yet?)")
    return exp.experiment_id


def fetch_runs(tracking_uri: str, experiment: str, sweep_name: str, *, finished_only: bool = True) -> list[Any]:
    """Every FINISHED run (or, with ``finished_only=False``, every run) of ``sweep_name`` in ``experiment``
    (``mlflow.entities.Run`` objects), paginated."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    _check_name(sweep_name)
    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = _experiment_id(client, tracking_uri, experiment)
    query = f"tags.`{SWEEP_TAG}` = '{sweep_name}'" + (" and attributes.status = 'FINISHED'" * finished_only)
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=query, run_view_type=ViewType.ACTIVE_ONLY,
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


def fetch_records(tracking_uri: str, experiment: str, sweep_name: str, *, params: Iterable[str] | None = None,
                  metrics: Iterable[str] | None = None, fallback: Mapping[str, str] | None = None) -> list[RunRecord]:
    """FINISHED runs of ``sweep_name`` as ``RunRecord``s holding only the named ``params`` and ``metrics``.

    ``None`` means all of them. ``fallback`` maps a summary metric to the raw metric to read instead for a
    run that lacks the summary (``best_val_top1 -> val_top1``). On a database store this reads just those
    columns (see the module doc); otherwise it is ``fetch_runs`` filtered down.
    """
    fallback = dict(fallback or {})
    scheme = tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in DB_SCHEMES:
        return _filtered(fetch_runs(tracking_uri, experiment, sweep_name), params, metrics, fallback)
    return _fetch_from_database(tracking_uri, experiment, sweep_name, params, metrics, fallback)


def _filtered(runs: Iterable[Any], params: Iterable[str] | None, metrics: Iterable[str] | None,
              fallback: Mapping[str, str]) -> list[RunRecord]:
    keep_p = None if params is None else set(params)
    keep_m = None if metrics is None else {*metrics, *fallback.values()}
    return [RunRecord(r.run_id, r.status, r.sweep,
                      {k: v for k, v in r.params.items() if keep_p is None or k in keep_p},
                      {k: v for k, v in r.metrics.items() if keep_m is None or k in keep_m})
            for r in records_from_runs(runs)]


# MLflow's tracking tables (mlflow/store/tracking/dbmodels/models.py), only the columns read here, declared
# lightly so the fast path needs neither MLflow's import (~2 s) nor its ORM. Their names have not changed
# across MLflow's schema migrations; should they ever, the query fails and the API path answers instead.
def _tables() -> dict[str, Any]:
    import sqlalchemy as sa

    return {
        "experiments": sa.table("experiments", sa.column("experiment_id"), sa.column("name"),
                                sa.column("lifecycle_stage")),
        "runs": sa.table("runs", sa.column("run_uuid"), sa.column("experiment_id"), sa.column("status"),
                         sa.column("lifecycle_stage")),
        "tags": sa.table("tags", sa.column("run_uuid"), sa.column("key"), sa.column("value")),
        "params": sa.table("params", sa.column("run_uuid"), sa.column("key"), sa.column("value")),
        "latest_metrics": sa.table("latest_metrics", sa.column("run_uuid"), sa.column("key"), sa.column("value"),
                                   sa.column("is_nan")),
    }


def _fetch_from_database(tracking_uri: str, experiment: str, sweep_name: str, params: Iterable[str] | None,
                         metrics: Iterable[str] | None, fallback: Mapping[str, str]) -> list[RunRecord]:
    import sqlalchemy as sa

    _check_name(sweep_name)
    t = _tables()
    engine = sa.create_engine(tracking_uri)
    try:
        with engine.connect() as conn:
            exp = t["experiments"]
            exps = conn.execute(sa.select(exp.c.experiment_id).where(
                exp.c.name == experiment, exp.c.lifecycle_stage == "active")).all()
            if len(exps) == 1:
                return _read_runs(conn, t, int(exps[0][0]), sweep_name, params, metrics, fallback)
    except sa.exc.SQLAlchemyError as exc:
        log.warning("reading %s directly failed (%s); using MlflowClient.search_runs", tracking_uri, exc)
    finally:
        engine.dispose()
    # absent, one per MLflow workspace, or an unexpected schema: the API knows
    return _filtered(fetch_runs(tracking_uri, experiment, sweep_name), params, metrics, fallback)


def _read_runs(conn: Any, t: dict[str, Any], exp_id: int, sweep_name: str, params: Iterable[str] | None,
               metrics: Iterable[str] | None, fallback: Mapping[str, str]) -> list[RunRecord]:
    import sqlalchemy as sa

    runs_t, tags_t, params_t, metrics_t = t["runs"], t["tags"], t["params"], t["latest_metrics"]
    runs = (
        sa.select(runs_t.c.run_uuid)
        .join(tags_t, sa.and_(tags_t.c.run_uuid == runs_t.c.run_uuid, tags_t.c.key == SWEEP_TAG))
        .where(runs_t.c.experiment_id == exp_id, runs_t.c.lifecycle_stage == "active",
               runs_t.c.status == "FINISHED", tags_t.c.value == sweep_name)
    )
    param_q = sa.select(params_t.c.run_uuid, params_t.c.key, params_t.c.value).where(params_t.c.run_uuid.in_(runs))
    if params is not None:
        param_q = param_q.where(params_t.c.key.in_(sorted(set(params))))
    metric_cols = (metrics_t.c.run_uuid, metrics_t.c.key, metrics_t.c.value, metrics_t.c.is_nan)
    metric_q = sa.select(*metric_cols).where(metrics_t.c.run_uuid.in_(runs))
    if metrics is not None:
        metric_q = metric_q.where(metrics_t.c.key.in_(sorted(set(metrics))))
    run_ids = [row[0] for row in conn.execute(runs).all()]  # .all(): one fetch, not one call per row
    got_params: dict[str, dict[str, str]] = {rid: {} for rid in run_ids}
    got_metrics: dict[str, dict[str, float]] = {rid: {} for rid in run_ids}
    for rid, key, value in conn.execute(param_q).all():
        got_params[rid][key] = value
    for rid, key, value, is_nan in conn.execute(metric_q).all():
        got_metrics[rid][key] = math.nan if is_nan else float(value)
    lacking = [rid for rid in run_ids if any(k not in got_metrics[rid] for k in fallback)]
    if lacking:  # runs without a summary metric: read the raw metric it summarises (rare, so a second query)
        raw_q = sa.select(*metric_cols).where(metrics_t.c.key.in_(sorted(set(fallback.values()))))
        for start in range(0, len(lacking), 500):  # bounded IN lists for every database
            chunk = raw_q.where(metrics_t.c.run_uuid.in_(lacking[start:start + 500]))
            for rid, key, value, is_nan in conn.execute(chunk):
                got_metrics[rid][key] = math.nan if is_nan else float(value)
    return [RunRecord(rid, "FINISHED", sweep_name, got_params[rid], got_metrics[rid]) for rid in run_ids]
