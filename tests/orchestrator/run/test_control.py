"""Acting on a recorded sweep (``orchestrator.run.control``): a trial's log, status with a live job, ending the
recorded jobs.

`convsweep status` and `logs` on finished, failed and interrupted trials are in tests/orchestrator/test_cli.py;
`cancel` of a running driver in tests/orchestrator/run/test_sweep_e2e.py and tests/slurm (they need a driver).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import yaml

from orchestrator.run.control import end_jobs, status_rows, trial_log
from orchestrator.run.executors.local import _group_alive
from orchestrator.run.state import executor_of
from orchestrator.spec.schema import ResourcesSpec

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this module


def _sleep_forever(marker: str) -> None:
    Path(marker).write_text("up")
    time.sleep(600)


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_trial_dirs) -> tuple:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "ctl.yaml"
    path.write_text(yaml.safe_dump({
        "name": "ctl", "tracking": {"uri": "sqlite:///mlruns.db"}, "storage": {"root": "runs"},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2}},
        "grid": {"layer.method": ["stdconv", "gmconv"]},
        "executor": {"local": {"warm_start": False}},  # a bare interpreter: the job below needs no torch
    }))  # fmt: skip
    return record_trial_dirs(path)


def test_trial_log_by_key_prefix(recorded: tuple) -> None:
    _, (first, second) = recorded
    first.log_path.write_text("epoch 1\n")
    assert trial_log("ctl", "runs", first.path.name[:5]) == first.log_path
    with pytest.raises(ValueError, match="no log yet"):
        trial_log("ctl", "runs", second.path.name)
    with pytest.raises(ValueError, match=f"no trial matches 'zzz' \\(allowed: {min(first.path.name, second.path.name)}"):
        trial_log("ctl", "runs", "zzz")
    with pytest.raises(ValueError, match="more than one trial matches ''"):
        trial_log("ctl", "runs", "")


def test_status_shows_a_live_job_and_end_jobs_ends_it(recorded: tuple, tmp_path: Path) -> None:
    spec, (running, idle) = recorded
    marker = tmp_path / "up"
    handle = executor_of(spec).submit(lambda: _sleep_forever(str(marker)), name="ctl-job", resources=ResourcesSpec())
    try:
        running.write_job("local", handle.job_id)
        running.append_metrics({"epoch": 1, "epoch_seconds": 2.0})
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        states = {row.trial_key: row.state for row in status_rows("ctl", "runs")}
        assert states == {running.path.name: "running", idle.path.name: "pending"}

        assert end_jobs(spec) == 1  # found through job.json, as `convsweep cancel` from another shell finds it
        assert not _group_alive(int(handle.job_id))
        assert end_jobs(spec) == 0
        states = {row.trial_key: row.state for row in status_rows("ctl", "runs")}
        assert states == {running.path.name: "interrupted", idle.path.name: "pending"}
    finally:
        handle.cancel()
