"""The sweep's runs as the driver reads them before Tune runs: straight from a SQLite store, or through MLflow."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from orchestrator.track.sweepstatus import (finished_keys, from_tracker, latest_by_key, run_states,
                                            stopped_keys)
from orchestrator.track.tracker import Tracker


def _never() -> Tracker:
    raise AssertionError("a SQLite store is read without MLflow")


def test_sqlite_read_answers_as_mlflow_does(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert run_states(uri, "exp", "s", _never) == []  # no store: no runs, and none created
    assert not (tmp_path / "mlruns.db").exists()
    tracker = Tracker(uri, "exp", "s")
    other = Tracker(uri, "exp", "other-sweep")
    elsewhere = Tracker(uri, "exp2", "s")
    client = tracker.client

    def run(t: Tracker, key: str, status: str, **tags: str) -> str:
        made = t.client.create_run(t.experiment_id, tags={"convsweep.sweep": t.sweep, "convsweep.trial_key": key,
                                                          **tags})
        t.client.set_terminated(made.info.run_id, status) if status != "RUNNING" else None
        time.sleep(0.005)  # distinct start times: "latest" is then MLflow's order, not a tie-break
        return made.info.run_id

    run(tracker, "a", "FINISHED")
    run(tracker, "b", "FAILED")
    run(tracker, "b", "RUNNING")  # b's latest run
    run(tracker, "c", "FAILED")
    run(tracker, "d", "KILLED", **{"convsweep.stopped": "scheduler"})
    run(tracker, "e", "KILLED")
    run(tracker, "f", "FINISHED")
    run(tracker, "f", "KILLED")  # an older FINISHED run still settles f
    client.delete_run(run(tracker, "g", "FINISHED"))
    run(other, "h", "FINISHED")
    run(elsewhere, "i", "FINISHED")

    direct = run_states(uri, "exp", "s", _never)
    assert direct == from_tracker(tracker)
    assert finished_keys(direct) == tracker.finished_keys() == {"a", "f"}
    assert stopped_keys(direct) == tracker.stopped_keys() == {"d"}
    latest = latest_by_key(direct)
    assert {k: (r.run_id, r.status) for k, r in latest.items()} == {
        k: (r.info.run_id, r.info.status) for k, r in tracker.status_by_key().items()}
    assert {k for k, r in latest.items() if r.status == "FAILED"} == {"c"}
    assert run_states(uri, "no-such-experiment", "s", _never) == []


def test_driver_and_session_import_no_mlflow() -> None:
    """MLflow (3-4 s of imports) stays off the way from `convsweep sweep` to the first trial."""
    code = "import sys, orchestrator.run.driver, orchestrator.run.session; print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
