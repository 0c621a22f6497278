"""The local executor: world_size processes with submitit's distributed environment, state, failure, cancel."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from orchestrator.spec.schema import ExecutorSpec, ResourcesSpec
from orchestrator.run.executors.base import JobHandle, JobState, get_executor
from orchestrator.run.executors.local import LocalExecutor, _group_alive

# The jobs below are defined here; the job processes cannot import this test module, so pickle them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _write_rank(out_dir: str) -> int:
    import submitit

    env = submitit.JobEnvironment()
    Path(out_dir, f"rank{env.global_rank}").write_text(f"{env.global_rank}/{env.num_tasks}")
    return env.global_rank


def _fail() -> None:
    raise RuntimeError("boom from the job")


def _sleep_forever(out_dir: str) -> None:
    Path(out_dir, f"pid{os.getpid()}").write_text("")
    time.sleep(600)


def _wait(handle: JobHandle, timeout: float = 60.0) -> JobState:
    deadline = time.monotonic() + timeout
    while not handle.done():
        assert time.monotonic() < deadline, f"job {handle.job_id} still {handle.state()}"
        time.sleep(0.2)
    return handle.state()


def test_entry_point_finds_local_executor(tmp_path: Path) -> None:
    executor = get_executor(ExecutorSpec(kind="local"), tmp_path)
    assert isinstance(executor, LocalExecutor)
    assert executor.kind == "local"


def test_runs_world_size_processes(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "submitit", ExecutorSpec())
    handle = executor.submit(
        lambda: _write_rank(str(tmp_path)), name="ranks", resources=ResourcesSpec(processes_per_node=2)
    )
    assert isinstance(handle, JobHandle)
    assert _wait(handle) == JobState.COMPLETED
    assert handle.reason() is None
    assert sorted(p.read_text() for p in tmp_path.glob("rank*")) == ["0/2", "1/2"]
    assert handle.log_path.exists()
    assert handle.requeues == 0  # never restarted under its id: a local retry is a new job


def test_failure_gives_reason(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path, ExecutorSpec())
    handle = executor.submit(_fail, name="fail", resources=ResourcesSpec())
    assert _wait(handle) == JobState.FAILED
    assert "boom from the job" in (handle.reason() or "")
    assert "boom from the job" in handle.log_path.read_text()


def test_cancel_ends_every_process(tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "submitit", ExecutorSpec())
    handle = executor.submit(
        lambda: _sleep_forever(str(tmp_path)), name="sleep", resources=ResourcesSpec(processes_per_node=2)
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid*"))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert handle.state() == JobState.RUNNING
    handle.cancel()
    assert handle.state() == JobState.CANCELLED
    assert not _group_alive(int(handle.job_id))
    for pid_file in tmp_path.glob("pid*"):
        pid = int(pid_file.name[3:])
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_attach_finds_and_ends_an_orphaned_job(tmp_path: Path) -> None:
    """A driver that died leaves its job running; a new executor finds it by id and ends it."""
    first = LocalExecutor(tmp_path / "submitit", ExecutorSpec())
    handle = first.submit(lambda: _sleep_forever(str(tmp_path)), name="orphan", resources=ResourcesSpec())
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("pid*")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    second = LocalExecutor(tmp_path / "submitit", ExecutorSpec())
    stale = second.attach(handle.job_id)
    assert stale is not None and stale.state() == JobState.RUNNING
    stale.cancel()
    assert not _group_alive(int(handle.job_id))
    assert second.attach(handle.job_id) is None
    assert second.attach("not-a-pid") is None


def test_local_executor_runs_one_node_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resources.nodes"):
        LocalExecutor(tmp_path, ExecutorSpec()).submit(_fail, name="x", resources=ResourcesSpec(nodes=2))
