"""The executor protocol (``orchestrator.run.executors.base``): what every executor has, and ``live_job``, the one
way from a recorded job to its live handle."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cloudpickle

from orchestrator.dirs.trialdir import TrialDir
from orchestrator.run.executors.base import Executor, ExecutorBase, JobHandle, live_job
from orchestrator.run.executors.local import LocalExecutor, LocalJobHandle, _group_alive
from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec
from slurm.executor import SlurmExecutor, SlurmJobHandle

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job process cannot import this module

COLD = ExecutorSpec(local={"warm_start": False})  # a bare interpreter starts in a second; no torch needed here


def _sleep_forever(marker: str) -> None:
    Path(marker).write_text("up")
    time.sleep(600)


def _running(executor: LocalExecutor, tmp_path: Path, name: str) -> LocalJobHandle:
    marker = tmp_path / f"{name}.up"
    handle = executor.submit(lambda: _sleep_forever(str(marker)), name=name, resources=ResourcesSpec())
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, f"job {handle.job_id} did not start"
        time.sleep(0.1)
    return handle


def test_every_executor_has_the_whole_protocol() -> None:
    for executor in (LocalExecutor, SlurmExecutor):
        assert issubclass(executor, ExecutorBase)
        for method in ("submit", "attach", "start_watching", "cancel_all"):
            assert callable(getattr(executor, method, None)), (executor, method)
    for handle in (LocalJobHandle, SlurmJobHandle):
        assert isinstance(getattr(handle, "requeues", None), property), handle
    local = LocalExecutor(Path("/nonexistent"), COLD)
    assert isinstance(local, Executor) and local.start_watching() is None


def test_live_job_follows_a_recorded_job_until_cancel_all_ends_it(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "jobs", COLD)
    first, second = _running(executor, tmp_path, "one"), _running(executor, tmp_path, "two")
    td = TrialDir(tmp_path / "trial")
    td.create()
    assert live_job(executor, td.read_job()) is None  # nothing recorded
    td.write_job("local", first.job_id)
    attached = live_job(executor, td.read_job())
    assert isinstance(attached, JobHandle) and attached.job_id == first.job_id and not attached.done()
    # an id recorded by another executor names no job of this one, whatever runs under that number here
    assert live_job(executor, {"executor": "slurm", "job_id": first.job_id}) is None

    executor.cancel_all([attached, second])  # ExecutorBase's default: each ended, all at once
    assert not _group_alive(int(first.job_id)) and not _group_alive(int(second.job_id))
    assert live_job(executor, td.read_job()) is None  # ended: no live handle
