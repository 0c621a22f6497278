"""A recorded sweep's state (``orchestrator.run.state``): the driver's pid and job, and the trials' live jobs."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import yaml

from orchestrator.run.executors.local import _group_alive
from orchestrator.run.state import driver_job, driver_pid, executor_of, job_alive, write_driver_pid
from orchestrator.run.sweepdir import SweepDir
from orchestrator.spec.load import load_sweep
from orchestrator.spec.schema import ResourcesSpec, SweepSpec

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this module


def _sleep_forever(marker: str) -> None:
    Path(marker).write_text("up")
    time.sleep(600)


@pytest.fixture
def spec(tmp_path: Path) -> SweepSpec:
    path = tmp_path / "state.yaml"
    path.write_text(yaml.safe_dump({
        "name": "state", "tracking": {"uri": f"sqlite:///{tmp_path / 'mlruns.db'}"},
        "storage": {"root": str(tmp_path / "runs")},
        "base": {"model": "resnet20", "dataset": {"name": "digits"}, "recipe": {"epochs": 2}},
        "executor": {"local": {"warm_start": False}},  # a bare interpreter: the job below needs no torch
    }))  # fmt: skip
    return load_sweep(path)


def test_driver_pid_is_this_hosts_only(spec: SweepSpec) -> None:
    assert driver_pid(spec) is None
    write_driver_pid(spec, 4321)
    assert driver_pid(spec) == 4321
    pid_file = SweepDir.of(spec).driver_pid
    pid_file.write_text(f"4321 not-{socket.gethostname()}\n")  # a driver on another host: no pid to signal here
    assert driver_pid(spec) is None
    pid_file.write_text("garbage\n")
    assert driver_pid(spec) is None


def test_driver_job_of_another_executor_or_torn_record(spec: SweepSpec) -> None:
    path = SweepDir.of(spec).driver_job
    assert driver_job(spec) is None
    path.parent.mkdir(parents=True)
    path.write_text(f'{{"executor": "slurm", "job_id": "{os.getpid()}"}}')  # not this sweep's executor's job
    assert driver_job(spec) is None
    path.write_text('{"executor": "loc')
    with pytest.raises(ValueError, match=f"{path}: not valid JSON"):
        driver_job(spec)


def test_job_alive_while_the_recorded_job_runs(spec: SweepSpec, tmp_path: Path) -> None:
    folder = SweepDir.of(spec)
    td = folder.trial("k1")
    td.create()
    assert job_alive(spec, td) is None
    executor = executor_of(spec)
    assert executor.folder == folder.jobs.resolve()  # the executor keeps its files in the sweep's jobs/
    marker = tmp_path / "up"
    handle = executor.submit(lambda: _sleep_forever(str(marker)), name="alive", resources=ResourcesSpec())
    try:
        td.write_job("local", handle.job_id)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        alive = job_alive(spec, td)
        assert alive is not None and alive.job_id == handle.job_id
    finally:
        handle.cancel()
    assert not _group_alive(int(handle.job_id)) and job_alive(spec, td) is None
