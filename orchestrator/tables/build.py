"""A sweep's table: ``sweep_table`` reads the sweep's FINISHED runs from its MLflow store (only the params and
metrics the table needs, ``needed_keys``, through ``orchestrator.track.query``), leaves out the runs whose
trial folders contradict their finish, lays out the planned trials (``expected_layout``, so unfinished cells
show as missing) and pivots the rest into cells (``orchestrator.tables.pivot``); ``sweep_table_from_export``
does the same from a ``convsweep export`` file, without MLflow. Rendering is ``orchestrator.tables.render``'s,
printing the CLI's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from orchestrator.spec.tablespec import TableSpec
from orchestrator.tables.pivot import build_table
from orchestrator.tables.table import Table
from orchestrator.track.query import fetch_columns

__all__ = ["expected_layout", "needed_keys", "sweep_table", "sweep_table_from_export"]


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
    runs = fetch_columns(uri, sweep.experiment, sweep.name, params=params, metrics=metrics, fallback=fallback)
    contradicted = _contradicted_runs(sweep, set(runs.run_ids))
    runs = runs.without(contradicted)
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
