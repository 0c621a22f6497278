"""The runs of a sweep's trials and their status: what the driver asks before Ray Tune runs (which
trials are settled, which failed), without MLflow on its critical path.

A SQLite store is read directly (``sqlitecolumns``' read-only connection; no MLflow import, which costs the
driver 3-4 s before its first trial could start); any other store, or a SQLite file this does not understand,
through ``Tracker.runs``. Both answer the same (``tests/orchestrator/track/test_sweepstatus.py``).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from orchestrator.track.store import TAG, sqlite_path

if TYPE_CHECKING:
    from orchestrator.track.tracker import Tracker

__all__ = ["RunState", "from_tracker", "run_states", "finished_keys", "stopped_keys", "latest_by_key"]

log = logging.getLogger(__name__)

_STOPPED = f"{TAG}stopped"


@dataclass(frozen=True)
class RunState:
    """An active run of one trial in the sweep's experiment."""

    trial_key: str
    run_id: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED, SCHEDULED
    stopped: str | None  # its tag convsweep.stopped ("scheduler": the ASHA scheduler ended it)


def run_states(uri: str, experiment: str, sweep: str, tracker: Callable[[], Tracker]) -> list[RunState]:
    """The sweep's active runs, oldest first (``Tracker.runs``); ``tracker()`` is called only when the store is
    not a SQLite file this reads itself."""
    path = sqlite_path(uri)
    if path is not None:
        if not path.exists():
            return []  # no store yet, so no runs (and reading must not create it)
        got = _read_sqlite(path, experiment, sweep)
        if got is not None:
            return got
    return from_tracker(tracker())


def from_tracker(tracker: Tracker) -> list[RunState]:
    """The sweep's runs through MLflow's API (any store)."""
    return [RunState(run.data.tags[f"{TAG}trial_key"], run.info.run_id, run.info.status, run.data.tags.get(_STOPPED))
            for run in tracker.runs()]


def finished_keys(runs: list[RunState]) -> set[str]:
    """``Tracker.finished_keys``: trials with a FINISHED run."""
    return {r.trial_key for r in runs if r.status == "FINISHED"}


def stopped_keys(runs: list[RunState]) -> set[str]:
    """``Tracker.stopped_keys``: trials with a run the scheduler stopped early (KILLED on purpose)."""
    return {r.trial_key for r in runs if r.status == "KILLED" and r.stopped == "scheduler"}


def latest_by_key(runs: list[RunState]) -> dict[str, RunState]:
    """``Tracker.status_by_key``: the latest run of each trial."""
    return {r.trial_key: r for r in runs}


# the active runs of one experiment tagged with the sweep, oldest first as Tracker.runs sorts them (ties by
# run id, MLflow's own tie-break), with their trial key and stopped tags
_RUNS = f"""
SELECT r.run_uuid, r.status, k.value, s.value FROM runs r
  JOIN tags w ON w.run_uuid = r.run_uuid AND w.key = '{TAG}sweep' AND w.value = ?
  JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = '{TAG}trial_key'
  LEFT JOIN tags s ON s.run_uuid = r.run_uuid AND s.key = '{_STOPPED}'
WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active'
ORDER BY COALESCE(r.start_time, 0), r.run_uuid
"""


def _read_sqlite(path: Path, experiment: str, sweep: str) -> list[RunState] | None:
    from orchestrator.track.sqlitecolumns import open_readonly

    try:
        with open_readonly(path) as db:
            # any lifecycle stage: Tracker uses the experiment get_experiment_by_name finds, deleted or not
            exps = db.execute("SELECT experiment_id FROM experiments WHERE name = ?", (experiment,)).fetchall()
            if not exps:
                return []
            if len(exps) != 1:
                return None  # one per MLflow workspace: the API knows which
            rows = db.execute(_RUNS, (sweep, exps[0][0])).fetchall()
    except sqlite3.Error as exc:
        log.warning("reading %s directly failed (%s); asking MLflow", path, exc)
        return None
    return [RunState(key, rid, status, stopped) for rid, status, key, stopped in rows]
